using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Root-mean-square layer norm as in Llama: <c>weight * x / sqrt(mean(x²) + eps)</c>, computed in float32 and
/// cast back to the input dtype (as HuggingFace does, so bf16/fp16 models match it).
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double _eps;

    /// <summary>Creates the norm over the last dimension of size <paramref name="size"/>, weight initialised to 1.</summary>
    /// <param name="size">Size of the normalised (last) dimension.</param>
    /// <param name="eps">Added to the mean square before the square root.</param>
    /// <param name="name">Module name.</param>
    /// <param name="device">Device of the weight (default CPU).</param>
    /// <param name="dtype">Element type of the weight (default float32).</param>
    public RmsNorm(int size, double eps = 1e-6, string name = "norm", Device? device = null, ScalarType? dtype = null) : base(TorchBackend.Checked(name))
    {
        Guard.Positive(size, nameof(size));
        if (!(eps > 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, $"eps must be positive, but was {eps}.");
        Size = size;
        _eps = eps;
        weight = new Parameter(ones(size, dtype ?? ScalarType.Float32, device));
        RegisterComponents();
    }

    /// <summary>Size of the normalised dimension.</summary>
    public int Size { get; }

    /// <summary>Normalises <paramref name="x"/> [..., Size].</summary>
    public override Tensor forward(Tensor x)
    {
        if (x.size(-1) != Size)
            throw new ArgumentException($"x must end in a dimension of size {Size}, but has shape {Guard.Shape(x)}.", nameof(x));
        return Kernels.RmsNorm(x, weight, _eps);
    }

    /// <summary>The maths in libtorch ops: <c>weight * (x32 * rsqrt(mean(x32²) + eps)).to(dtype)</c>, x32 = x in float32.</summary>
    internal static Tensor Reference(Tensor x, Tensor weight, double eps)
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var inverseRms = x32.pow(2).mean([-1], keepdim: true).add_(eps).rsqrt_();
        return (weight * (x32 * inverseRms).to(x.dtype)).MoveToOuterDisposeScope();
    }
}
