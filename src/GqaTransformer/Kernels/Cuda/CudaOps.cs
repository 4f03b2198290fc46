using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// libtorch operations on CUDA that TorchSharp 0.107 does not bind, called through the native shim (native/README.md).
/// Each is one fused kernel where the managed form launches several, which is most of what a decode step costs on a
/// GPU (ADR 0015). Without the shim the seam runs the managed form.
/// </summary>
internal static unsafe class CudaOps
{
    /// <summary>Whether <see cref="RmsNorm"/> takes <paramref name="x"/> and <paramref name="weight"/>: both on CUDA, one dtype, the shim loaded.</summary>
    public static bool SupportsRmsNorm(Tensor x, Tensor weight)
        => x.device_type == DeviceType.CUDA && weight.device_type == DeviceType.CUDA && x.dtype == weight.dtype
           && weight.dim() == 1 && x.size(-1) == weight.size(0) && CudaGraphs.Library is { } library && library.RmsNorm != null;

    /// <summary>Why <see cref="Autocast"/> cannot run here, or null when it can (the shim loaded, with autocast).</summary>
    public static string? AutocastUnavailableReason
        => CudaGraphs.FeatureUnavailableReason(library => library.Autocast != null, "autocast");

    /// <summary>
    /// Runs CUDA matmuls issued on this thread in <paramref name="dtype"/> until the returned scope is disposed, as
    /// <c>torch.autocast("cuda", dtype)</c>: float32 weights stay the master copy, softmax and losses stay float32.
    /// </summary>
    public static IDisposable Autocast(ScalarType dtype)
    {
        if (AutocastUnavailableReason is { } reason) throw new InvalidOperationException($"CUDA autocast is unavailable: {reason}.");
        var library = CudaGraphs.Library!;
        if (library.Autocast(1, (int)dtype) != 0)
            throw new InvalidOperationException($"CUDA autocast failed: {library.LastError}.");
        return new AutocastScope(library);
    }

    private sealed class AutocastScope(CudaGraphLibrary library) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            if (library.Autocast(0, 0) != 0)
                throw new InvalidOperationException($"CUDA autocast failed to end: {library.LastError}.");
        }
    }

    /// <summary><c>at::rms_norm(x) * weight</c>: HF's form in two launches (normalised in float32, rounded, then weighted).</summary>
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        var library = CudaGraphs.Library!;
        nint result;
        if (library.RmsNorm(x.Handle, weight.Handle, eps, &result) != 0)
            throw new InvalidOperationException($"CUDA RMSNorm failed: {library.LastError}.");
        return Tensor.UnsafeCreateTensor(result);
    }
}
