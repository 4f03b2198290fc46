using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Root-mean-square layer norm: x̂ = x / sqrt(mean(x²) + eps) computed in float32, weighted as the family does
/// (<see cref="RmsNormKind"/>: Llama's <c>w · x̂</c> after the cast back to the input dtype, OLMo 2's before it, Gemma's
/// <c>(1 + w) · x̂</c>), so bf16/fp16 models match HuggingFace.
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double _eps;

    /// <summary>Creates the norm over the last dimension of size <paramref name="size"/>, weight initialised to the identity (1, or 0 for <see cref="RmsNormKind.OnePlusWeight"/>).</summary>
    /// <param name="size">Size of the normalised (last) dimension.</param>
    /// <param name="eps">Added to the mean square before the square root.</param>
    /// <param name="name">Module name.</param>
    /// <param name="device">Device of the weight (default CPU).</param>
    /// <param name="dtype">Element type of the weight (default float32).</param>
    /// <param name="kind">How the weight applies (default Llama's).</param>
    public RmsNorm(int size, double eps = 1e-6, string name = "norm", Device? device = null, ScalarType? dtype = null, RmsNormKind kind = RmsNormKind.Llama)
        : base(TorchBackend.Checked(name))
    {
        Guard.Positive(size, nameof(size));
        if (!(eps > 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, $"eps must be positive, but was {eps}.");
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "kind must be a defined RmsNormKind.");
        Size = size;
        Kind = kind;
        _eps = eps;
        weight = new Parameter(kind == RmsNormKind.OnePlusWeight ? zeros(size, dtype ?? ScalarType.Float32, device) : ones(size, dtype ?? ScalarType.Float32, device));
        RegisterComponents();
    }

    /// <summary>Size of the normalised dimension.</summary>
    public int Size { get; }

    /// <summary>How the weight applies.</summary>
    public RmsNormKind Kind { get; }

    /// <summary>Normalises <paramref name="x"/> [..., Size].</summary>
    public override Tensor forward(Tensor x)
    {
        if (x.size(-1) != Size)
            throw new ArgumentException($"x must end in a dimension of size {Size}, but has shape {Guard.Shape(x)}.", nameof(x));
        return Kernels.RmsNorm(x, weight, _eps, Kind);
    }

    /// <summary>The maths in libtorch ops, x̂ = x32 · rsqrt(mean(x32²) + eps) with x32 = x in float32.</summary>
    internal static Tensor Reference(Tensor x, Tensor weight, double eps, RmsNormKind kind = RmsNormKind.Llama)
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normalised = x32 * x32.pow(2).mean([-1], keepdim: true).add_(eps).rsqrt_();
        var y = kind switch
        {
            RmsNormKind.Llama => weight * normalised.to(x.dtype),
            RmsNormKind.WeightFirst => (weight * normalised).to(x.dtype),
            _ => (normalised * (weight.to(ScalarType.Float32) + 1.0)).to(x.dtype),
        };
        return y.MoveToOuterDisposeScope();
    }
}
