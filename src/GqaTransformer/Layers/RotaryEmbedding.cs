using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Rotary position embedding (RoPE) in HuggingFace's rotate-half layout: the first and second halves of the rotated
/// dimensions turn as pairs, so HF q/k weights work without permutation. Supports the <c>default</c>, <c>linear</c>,
/// <c>llama3</c> and <c>longrope</c> rope types, and partial rotary (Phi-3: only the first <see cref="RotaryDim"/> of each
/// head's dimensions rotate, the rest pass). It has no parameters; its frequency table follows whatever device the
/// positions are on, and the cos/sin tables come out in the dtype asked for.
/// </summary>
public sealed class RotaryEmbedding : nn.Module
{
    // Kept as managed floats so that no module registration ever turns them into state-dict buffers.
    private readonly float[] _inverseFrequencies;      // [RotaryDim/2]; LongRoPE's short factors
    private readonly float[]? _longFrequencies;        // LongRoPE's long factors, past _originalMax positions
    private readonly int _originalMax;
    private readonly float _attentionFactor = 1f;      // LongRoPE's factor on cos and sin
    private Tensor? _onDevice, _longOnDevice;          // the tables as tensors on the last device used (created lazily)

    /// <summary>Creates the embedding for heads of size <paramref name="headDim"/>, every dimension rotating.</summary>
    /// <param name="headDim">Head size (even).</param>
    /// <param name="theta">RoPE base.</param>
    /// <param name="scaling">Optional RoPE scaling (not LongRoPE, which needs the model's context sizes); null for the default.</param>
    /// <param name="name">Module name.</param>
    public RotaryEmbedding(int headDim, double theta = 10000.0, RopeScaling? scaling = null, string name = "rotary_emb")
        : this(Checked(headDim, theta, scaling), name)
    {
    }

    internal RotaryEmbedding(RotarySpec spec, string name = "rotary_emb") : base(TorchBackend.Checked(name))
    {
        spec.Validate();
        HeadDim = spec.HeadDim;
        RotaryDim = spec.RotaryDim;
        _inverseFrequencies = Frequencies(spec, spec.Scaling?.ShortFactor);
        if (spec.Scaling is { RopeType: "yarn" } yarn)
            _attentionFactor = (float)YarnAttentionFactor(yarn, spec);
        if (spec.Scaling is { RopeType: "longrope" } longRope)
        {
            _originalMax = spec.OriginalMaxPositions!.Value;
            _longFrequencies = Frequencies(spec, longRope.LongFactor);
            // transformers: factor = max_position_embeddings / original_max_position_embeddings unless given
            double factor = longRope.Factor ?? (double)spec.MaxPositions / _originalMax;
            _attentionFactor = (float)(longRope.AttentionFactor ?? (factor <= 1.0 ? 1.0 : Math.Sqrt(1 + Math.Log(factor) / Math.Log(_originalMax))));
        }
    }

    private static RotarySpec Checked(int headDim, double theta, RopeScaling? scaling)
    {
        Guard.Positive(headDim, nameof(headDim));
        if (headDim % 2 != 0)
            throw new ArgumentException($"headDim must be even for rotary embeddings, but was {headDim}.", nameof(headDim));
        if (!(theta > 0)) throw new ArgumentOutOfRangeException(nameof(theta), theta, "theta must be positive.");
        if (scaling?.RopeType == "longrope")
            throw new ArgumentException("LongRoPE needs the model's context sizes: build the model from a config.", nameof(scaling));
        return new(headDim, headDim, theta, scaling);
    }

    private static float[] Frequencies(RotarySpec spec, IReadOnlyList<double>? divisors)
    {
        using var table = spec.Scaling?.RopeType == "yarn" ? YarnFrequencies(spec) : ComputeInverseFrequencies(spec.RotaryDim, spec.Theta, spec.Scaling, divisors);
        return table.data<float>().ToArray();
    }

    /// <summary>YaRN's factor: given, or the model's context over the original one (DeepSeek-V3's way).</summary>
    private static double YarnFactor(RopeScaling yarn, RotarySpec spec)
        => yarn.Factor ?? (double)spec.MaxPositions / (spec.OriginalMaxPositions ?? spec.MaxPositions);

    /// <summary>YaRN's attention factor on cos and sin, as transformers' _compute_yarn_parameters sets it.</summary>
    private static double YarnAttentionFactor(RopeScaling yarn, RotarySpec spec)
    {
        static double Mscale(double scale, double m = 1) => scale <= 1 ? 1.0 : 0.1 * m * Math.Log(scale) + 1.0;
        double factor = YarnFactor(yarn, spec);
        return yarn.AttentionFactor ?? (yarn.Mscale is { } m && m != 0 && yarn.MscaleAllDim is { } all && all != 0
            ? Mscale(factor, m) / Mscale(factor, all)
            : Mscale(factor));
    }

    /// <summary>
    /// YaRN's inv_freq (transformers' _compute_yarn_parameters): each frequency blends interpolation (÷ factor) and
    /// extrapolation by a linear ramp over the dimensions between the correction range of beta_fast and beta_slow
    /// rotations within the original context.
    /// </summary>
    private static Tensor YarnFrequencies(RotarySpec spec)
    {
        var yarn = spec.Scaling!;
        int dim = spec.RotaryDim;
        double factor = YarnFactor(yarn, spec), original = spec.OriginalMaxPositions ?? spec.MaxPositions;
        double CorrectionDim(double rotations) => dim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(spec.Theta));
        double low = CorrectionDim(yarn.BetaFast ?? 32), high = CorrectionDim(yarn.BetaSlow ?? 1);
        if (yarn.Truncate ?? true) (low, high) = (Math.Floor(low), Math.Ceiling(high));
        (low, high) = (Math.Max(low, 0), Math.Min(high, dim - 1));
        if (low == high) high += 0.001;   // no singularity
        using var scope = NewDisposeScope();
        var powers = pow(tensor((float)spec.Theta), arange(0, dim, 2, ScalarType.Int64).to(ScalarType.Float32) / dim);
        var extrapolation = powers.reciprocal();
        var interpolation = (powers * (float)factor).reciprocal();
        var ramp = ((arange(dim / 2, ScalarType.Float32) - (float)low) / (float)(high - low)).clamp(0, 1);
        var extrapolationShare = 1 - ramp;
        return (interpolation * (1 - extrapolationShare) + extrapolation * extrapolationShare).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>The rotation frequency of each pair of dimensions (HF's <c>inv_freq</c>), after any RoPE scaling (LongRoPE: the short one).</summary>
    public IReadOnlyList<float> InverseFrequencies => _inverseFrequencies;

    /// <summary>Head size the tables are built for.</summary>
    public int HeadDim { get; }

    /// <summary>How many of the first dimensions of each head rotate (<see cref="HeadDim"/> unless partial).</summary>
    public int RotaryDim { get; }

    /// <summary>
    /// The cos and sin tables for <paramref name="positionIds"/> [B, T] (int64): each [B, T, RotaryDim] in
    /// <paramref name="dtype"/>, computed in float32 as HF does. LongRoPE takes its long factors when the largest
    /// position + 1 passes the original context, as transformers decides per forward.
    /// </summary>
    public (Tensor Cos, Tensor Sin) forward(Tensor positionIds, ScalarType dtype) => forward(positionIds, dtype, null);

    /// <summary>As <see cref="forward(Tensor, ScalarType)"/>, with the largest position + 1 known to the caller (no read of the positions).</summary>
    internal (Tensor Cos, Tensor Sin) forward(Tensor positionIds, ScalarType dtype, long? extent)
    {
        Guard.Rank(positionIds, 2, nameof(positionIds), "[batch, tokens]");
        using var scope = NewDisposeScope();
        bool useLong = _longFrequencies is not null && (extent ?? positionIds.max().item<long>() + 1) > _originalMax;
        var inverse = TableOn(positionIds.device, useLong);
        var angles = positionIds.to(ScalarType.Float32).unsqueeze(-1) * inverse; // [B, T, R/2]
        var doubled = cat([angles, angles], -1);                                // [B, T, R]
        var cos = doubled.cos();
        var sin = doubled.sin();
        if (_attentionFactor != 1f) { cos = cos * _attentionFactor; sin = sin * _attentionFactor; }
        return (cos.to(dtype).MoveToOuterDisposeScope(), sin.to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>LongRoPE's original context, past which it takes its long factors; null for other RoPE types.</summary>
    internal long? SwitchesAfter => _longFrequencies is null ? null : _originalMax;

    /// <summary>Whether positions up to <paramref name="extent"/> - 1 all use one table (LongRoPE switches past its original context).</summary>
    internal bool OneTableUpTo(long extent) => _longFrequencies is null || extent <= _originalMax;

    /// <summary>
    /// Rotates queries [B, H, T, D] and keys [B, Hkv, T, D] by the tables from <see cref="forward(Tensor, ScalarType)"/>:
    /// <c>x * cos + rotate_half(x) * sin</c> over the first R = cos.size(-1) dimensions; the others pass.
    /// </summary>
    public static (Tensor Query, Tensor Key) Apply(Tensor query, Tensor key, Tensor cos, Tensor sin)
        => Kernels.Rotary(query, key, cos, sin);

    /// <summary>The maths of <see cref="Apply"/> in libtorch ops.</summary>
    internal static (Tensor Query, Tensor Key) Reference(Tensor query, Tensor key, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var c = cos.unsqueeze(1); // [B, 1, T, R]
        var s = sin.unsqueeze(1);
        return (Rotate(query, c, s).MoveToOuterDisposeScope(), Rotate(key, c, s).MoveToOuterDisposeScope());
    }

    private static Tensor Rotate(Tensor x, Tensor cos, Tensor sin)
    {
        long rotary = cos.size(-1), d = x.size(-1);
        if (rotary == d) return x * cos + RotateHalf(x) * sin;
        var turning = x.narrow(-1, 0, rotary);                                  // Phi-3: the first R dimensions rotate
        return cat([turning * cos + RotateHalf(turning) * sin, x.narrow(-1, rotary, d - rotary)], -1);
    }

    private static Tensor RotateHalf(Tensor x)
    {
        long half = x.size(-1) / 2;
        var first = x.narrow(-1, 0, half);
        var second = x.narrow(-1, half, half);
        return cat([second.neg(), first], -1);
    }

    private Tensor TableOn(Device device, bool useLong)
    {
        ref var cached = ref useLong ? ref _longOnDevice : ref _onDevice;
        if (cached is null || cached.device_type != device.type || cached.device_index != device.index)
        {
            cached?.Dispose();
            cached = tensor(useLong ? _longFrequencies! : _inverseFrequencies, device: device).DetachFromDisposeScope();
        }
        return cached;
    }

    /// <summary>Computes inv_freq over <paramref name="rotaryDim"/> dimensions exactly as transformers' rope init functions do (float32 arithmetic).</summary>
    internal static Tensor ComputeInverseFrequencies(int rotaryDim, double theta, RopeScaling? scaling, IReadOnlyList<double>? divisors = null)
    {
        using var scope = NewDisposeScope();
        var exponents = arange(0, rotaryDim, 2, ScalarType.Int64).to(ScalarType.Float32) / rotaryDim;
        var powers = pow(tensor((float)theta), exponents);                 // theta^(2i/d)
        var inverse = powers.reciprocal();
        switch (scaling?.RopeType ?? "default")
        {
            case "default":
                break;
            case "linear":
                inverse = inverse / (float)scaling!.Factor!.Value;
                break;
            case "longrope": // 1 / (factor_i · theta^(2i/d)), the short or the long factors
                inverse = (tensor(divisors!.Select(x => (float)x).ToArray()) * powers).reciprocal();
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
        {
            _onDevice?.Dispose();
            _longOnDevice?.Dispose();
        }
        base.Dispose(disposing);
    }
}
