using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Rotary position embedding (RoPE) in HuggingFace's rotate-half layout: the first and second halves of each head
/// are rotated as pairs, so HF q/k weights work without permutation. Supports the <c>default</c>, <c>linear</c> and
/// <c>llama3</c> rope types. It has no parameters; its frequency table follows whatever device the positions are on,
/// and the cos/sin tables come out in the dtype asked for.
/// </summary>
public sealed class RotaryEmbedding : nn.Module
{
    // Kept as managed floats so that no module registration ever turns it into a state-dict buffer.
    private readonly float[] _inverseFrequencies;     // [headDim/2]
    private Tensor? _inverseFrequenciesOnDevice;      // the same as a tensor on the last device used (created lazily)

    /// <summary>Creates the embedding for heads of size <paramref name="headDim"/>.</summary>
    /// <param name="headDim">Head size (even).</param>
    /// <param name="theta">RoPE base.</param>
    /// <param name="scaling">Optional RoPE scaling; null for the default.</param>
    /// <param name="name">Module name.</param>
    public RotaryEmbedding(int headDim, double theta = 10000.0, RopeScaling? scaling = null, string name = "rotary_emb")
        : base(TorchBackend.Checked(name))
    {
        Guard.Positive(headDim, nameof(headDim));
        if (headDim % 2 != 0)
            throw new ArgumentException($"headDim must be even for rotary embeddings, but was {headDim}.", nameof(headDim));
        if (!(theta > 0)) throw new ArgumentOutOfRangeException(nameof(theta), theta, "theta must be positive.");
        scaling?.Validate(headDim);
        HeadDim = headDim;
        using var table = ComputeInverseFrequencies(headDim, theta, scaling);
        _inverseFrequencies = table.data<float>().ToArray();
    }

    /// <summary>The rotation frequency of each pair of dimensions (HF's <c>inv_freq</c>), after any RoPE scaling.</summary>
    public IReadOnlyList<float> InverseFrequencies => _inverseFrequencies;

    /// <summary>Head size the tables are built for.</summary>
    public int HeadDim { get; }

    /// <summary>
    /// The cos and sin tables for <paramref name="positionIds"/> [B, T] (int64): each [B, T, HeadDim] in
    /// <paramref name="dtype"/>, computed in float32 as HF does.
    /// </summary>
    public (Tensor Cos, Tensor Sin) forward(Tensor positionIds, ScalarType dtype)
    {
        Guard.Rank(positionIds, 2, nameof(positionIds), "[batch, tokens]");
        using var scope = NewDisposeScope();
        var inverse = InverseFrequenciesOn(positionIds.device);
        var angles = positionIds.to(ScalarType.Float32).unsqueeze(-1) * inverse; // [B, T, D/2]
        var doubled = cat([angles, angles], -1);                                // [B, T, D]
        var cos = doubled.cos().to(dtype);
        var sin = doubled.sin().to(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Rotates queries [B, H, T, D] and keys [B, Hkv, T, D] by the tables from <see cref="forward"/>:
    /// <c>x * cos + rotate_half(x) * sin</c>.
    /// </summary>
    public static (Tensor Query, Tensor Key) Apply(Tensor query, Tensor key, Tensor cos, Tensor sin)
        => Kernels.Rotary(query, key, cos, sin);

    /// <summary>The maths of <see cref="Apply"/> in libtorch ops.</summary>
    internal static (Tensor Query, Tensor Key) Reference(Tensor query, Tensor key, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var c = cos.unsqueeze(1); // [B, 1, T, D]
        var s = sin.unsqueeze(1);
        var q = query * c + RotateHalf(query) * s;
        var k = key * c + RotateHalf(key) * s;
        return (q.MoveToOuterDisposeScope(), k.MoveToOuterDisposeScope());
    }

    private static Tensor RotateHalf(Tensor x)
    {
        long half = x.size(-1) / 2;
        var first = x.narrow(-1, 0, half);
        var second = x.narrow(-1, half, half);
        return cat([second.neg(), first], -1);
    }

    private Tensor InverseFrequenciesOn(Device device)
    {
        var cached = _inverseFrequenciesOnDevice;
        if (cached is null || cached.device_type != device.type || cached.device_index != device.index)
        {
            cached?.Dispose();
            _inverseFrequenciesOnDevice = cached = tensor(_inverseFrequencies, device: device).DetachFromDisposeScope();
        }
        return cached;
    }

    /// <summary>Computes inv_freq exactly as transformers' rope init functions do (float32 arithmetic).</summary>
    internal static Tensor ComputeInverseFrequencies(int headDim, double theta, RopeScaling? scaling)
    {
        using var scope = NewDisposeScope();
        var exponents = arange(0, headDim, 2, ScalarType.Int64).to(ScalarType.Float32) / headDim;
        var inverse = pow(tensor((float)theta), exponents).reciprocal(); // 1 / theta^(2i/d)
        switch (scaling?.RopeType ?? "default")
        {
            case "default":
                break;
            case "linear":
                inverse = inverse / (float)scaling!.Factor!.Value;
                break;
            case "llama3":
            {
                double factor = scaling!.Factor!.Value;
                double low = scaling.LowFreqFactor!.Value, high = scaling.HighFreqFactor!.Value;
                double oldContext = scaling.OriginalMaxPositionEmbeddings!.Value;
                double lowFreqWavelen = oldContext / low, highFreqWavelen = oldContext / high;
                var wavelen = 2 * Math.PI / inverse;
                var scaled = where(wavelen > lowFreqWavelen, inverse / factor, inverse);
                var smooth = (oldContext / wavelen - low) / (high - low);
                var smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
                var isMedium = (wavelen < highFreqWavelen).logical_not().logical_and((wavelen > lowFreqWavelen).logical_not());
                inverse = where(isMedium, smoothed, scaled);
                break;
            }
            default:
                throw new NotSupportedException($"rope_type '{scaling!.RopeType}' is not supported.");
        }
        return inverse.to(ScalarType.Float32).contiguous().MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            _inverseFrequenciesOnDevice?.Dispose();
        base.Dispose(disposing);
    }
}
