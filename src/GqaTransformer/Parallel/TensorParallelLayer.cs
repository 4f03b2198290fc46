using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// One rank's share of a decoder layer (<see cref="TensorParallelPlan"/>): an ordinary <see cref="DecoderLayer"/> of the
/// rank's config (its query and KV heads, its slice of the MLP, full norms) loaded with the rank's slice of the weights.
/// Each block's output is this rank's part of a sum over ranks, which <c>allReduce</c> completes:
/// <c>h = x + norm2(Σ attn_r(norm1(x))); return h + norm4(Σ mlp_r(norm3(h)))</c>. Its cache layer holds this rank's KV heads only.
/// </summary>
internal sealed class TensorParallelLayer : IDisposable
{
    /// <summary>Rank <paramref name="plan"/>'s share of layer <paramref name="layerIndex"/>, with that slice of <paramref name="weights"/> (HF keys).</summary>
    public TensorParallelLayer(DecoderConfig config, TensorParallelPlan plan, int layerIndex, IReadOnlyDictionary<string, Tensor> weights,
        Device? device = null, ScalarType? dtype = null)
    {
        Plan = plan;
        Share = new DecoderLayer(plan.RankConfig(config), layerIndex, $"layer{layerIndex}.rank{plan.Rank}", device, dtype);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var slice = plan.Slice(weights, config.HeadDim);
        var own = Share.state_dict();
        if (!own.Keys.ToHashSet().SetEquals(slice.Keys))
        {
            Share.Dispose();
            throw new ArgumentException($"The layer's weights are {string.Join(", ", slice.Keys.Order())}, but a rank's share has {string.Join(", ", own.Keys.Order())}.", nameof(weights));
        }
        foreach (var (key, target) in own) target.copy_(slice[key]);
    }

    /// <summary>Which heads and MLP columns this rank holds.</summary>
    public TensorParallelPlan Plan { get; }

    /// <summary>The rank's layer: with one rank, the whole layer.</summary>
    public DecoderLayer Share { get; }

    /// <summary>This rank's share of attn(norm1(x)) [B, T, hidden]; the sum over ranks is the layer's.</summary>
    public Tensor AttentionPart(Tensor x, Tensor? cos, Tensor? sin, Tensor? mask, KvCache? cache)
        => Share.Attention.forward(Share.BeforeAttention(x), cos, sin, mask, cache);

    /// <summary>This rank's share of mlp(norm3(h)) [B, T, hidden]; the sum over ranks is the layer's.</summary>
    public Tensor MlpPart(Tensor h) => Share.MlpShare(h);

    /// <summary>The layer, with <paramref name="allReduce"/> summing a block's output over the ranks (NCCL's all-reduce); norms after a block see the sum.</summary>
    public Tensor forward(Tensor x, Tensor? cos, Tensor? sin, Tensor? mask, KvCache? cache, Func<Tensor, Tensor> allReduce)
    {
        using var scope = NewDisposeScope();
        var h = x + Share.AfterAttention(allReduce(AttentionPart(x, cos, sin, mask, cache)));
        return (h + Share.AfterMlp(allReduce(MlpPart(h)))).MoveToOuterDisposeScope();
    }

    /// <summary>Frees the share's weights.</summary>
    public void Dispose() => Share.Dispose();
}
