using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// One rank's share of a decoder layer (<see cref="TensorParallelPlan"/>): its query and KV heads, its slice of the MLP,
/// full norms. Each block's output is this rank's part of a sum over ranks, which <c>allReduce</c> completes:
/// <c>h = x + Σ attn_r(norm1(x)); return h + Σ mlp_r(norm2(h))</c>. Its cache layer holds this rank's KV heads only.
/// </summary>
internal sealed class TensorParallelLayer : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "input_layernorm")] private readonly RmsNorm _inputNorm;
    [ComponentName(Name = "self_attn")] private readonly MultiHeadAttention _attention;
    [ComponentName(Name = "post_attention_layernorm")] private readonly RmsNorm _postAttentionNorm;
    [ComponentName(Name = "mlp")] private readonly SwiGluMlp _mlp;

    /// <summary>Rank <paramref name="plan"/>'s share of layer <paramref name="layerIndex"/>, with that slice of <paramref name="weights"/>.</summary>
    public TensorParallelLayer(DecoderConfig config, TensorParallelPlan plan, int layerIndex, IReadOnlyDictionary<string, Tensor> weights,
        Device? device = null, ScalarType? dtype = null) : base($"layer{layerIndex}.rank{plan.Rank}")
    {
        Plan = plan;
        var rankConfig = plan.RankConfig(config);
        _inputNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, "input_layernorm", device, dtype);
        _attention = new MultiHeadAttention(rankConfig, layerIndex, device: device, dtype: dtype);
        _postAttentionNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, "post_attention_layernorm", device, dtype);
        _mlp = new SwiGluMlp(config.HiddenSize, plan.Intermediate, device: device, dtype: dtype);
        RegisterComponents();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var slice = plan.Slice(weights, config.HeadDim);
        var own = state_dict();
        if (!own.Keys.ToHashSet().SetEquals(slice.Keys))
            throw new ArgumentException($"The layer's weights are {string.Join(", ", slice.Keys.Order())}, but a rank's share has {string.Join(", ", own.Keys.Order())}.", nameof(weights));
        foreach (var (key, target) in own) target.copy_(slice[key]);
    }

    /// <summary>Which heads and MLP columns this rank holds.</summary>
    public TensorParallelPlan Plan { get; }

    /// <summary>This rank's share of attn(norm1(x)) [B, T, hidden]; the sum over ranks is the layer's.</summary>
    public Tensor AttentionPart(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache)
        => _attention.forward(_inputNorm.forward(x), cos, sin, mask, cache);

    /// <summary>This rank's share of mlp(norm2(h)) [B, T, hidden]; the sum over ranks is the layer's.</summary>
    public Tensor MlpPart(Tensor h) => _mlp.forward(_postAttentionNorm.forward(h));

    /// <summary>The layer, with <paramref name="allReduce"/> summing a block's output over the ranks (NCCL's all-reduce).</summary>
    public Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, Func<Tensor, Tensor> allReduce)
    {
        using var scope = NewDisposeScope();
        var h = x + allReduce(AttentionPart(x, cos, sin, mask, cache));
        return (h + allReduce(MlpPart(h))).MoveToOuterDisposeScope();
    }

    /// <summary>Without a cache, at positions 0..T-1: one rank alone (<c>Ranks</c> = 1) is the whole layer.</summary>
    public override Tensor forward(Tensor x)
    {
        if (Plan.Ranks != 1) throw new InvalidOperationException("A share of a layer split over several ranks needs the all-reduce overload.");
        using var scope = NewDisposeScope();
        var h = x + _attention.forward(_inputNorm.forward(x));
        return (h + _mlp.forward(_postAttentionNorm.forward(h))).MoveToOuterDisposeScope();
    }
}
