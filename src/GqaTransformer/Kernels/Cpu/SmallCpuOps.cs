using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Element-wise layers for the few values of a decode step on the CPU, in one managed pass instead of a chain of
/// libtorch calls, each of which costs microseconds of dispatch (ADR 0007). The rounding follows the libtorch chain
/// step by step, so half-precision results equal it up to float32 summation order. Inference only.
/// </summary>
internal static unsafe partial class SmallCpuOps
{
    /// <summary>Inputs up to this many elements take the managed pass (a decode step's activations, not a prompt's).</summary>
    public const long MaxElements = 1 << 16;

    /// <summary>Whether <paramref name="x"/> and <paramref name="weight"/> qualify: CPU, one float dtype, contiguous, small, no autograd.</summary>
    public static bool Supports(Tensor x, Tensor weight)
        => Qualifies(x, weight.dtype) && Qualifies(weight, x.dtype);

    /// <summary>
    /// Whether the RoPE inputs qualify: all four on the CPU in one float dtype, contiguous, small, no autograd, and
    /// shaped exactly query [B, H, T, D], key [B, Hkv, T, D], cos and sin [B, T, R] with R even and R ≤ D (R &lt; D is
    /// partial rotary, Phi-3's; anything else, such as tables that broadcast, takes the libtorch chain).
    /// </summary>
    public static bool SupportsRotary(Tensor query, Tensor key, Tensor cos, Tensor sin)
        => Qualifies(query, cos.dtype) && Qualifies(key, cos.dtype) && Qualifies(cos, sin.dtype) && Qualifies(sin, query.dtype)
           && query.dim() == 4 && key.dim() == 4 && cos.dim() == 3 && Guard.SameShape(cos, sin)
           && cos.size(2) % 2 == 0 && FitsTables(query, cos) && FitsTables(key, cos);

    private static bool FitsTables(Tensor x, Tensor table)
        => x.size(0) == table.size(0) && x.size(2) == table.size(1) && x.size(3) >= table.size(2);

    private static bool Qualifies(Tensor x, ScalarType dtype) => IsInferenceInput(x, dtype) && x.numel() <= MaxElements;

    /// <summary>Whether <paramref name="x"/> is a contiguous CPU tensor of <paramref name="dtype"/> (float32, bfloat16 or float16) that autograd is not recording.</summary>
    public static bool IsInferenceInput(Tensor x, ScalarType dtype)
        => x.device_type == DeviceType.CPU && x.dtype == dtype && IsSupported(dtype)
           && x.is_contiguous() && !(x.requires_grad && is_grad_enabled());

    /// <summary>Whether the managed passes read and write <paramref name="dtype"/>: float32, bfloat16, float16.</summary>
    public static bool IsSupported(ScalarType dtype) => dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16;
}
