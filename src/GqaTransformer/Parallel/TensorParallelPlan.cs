using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// One rank's share of a decoder under tensor parallelism, GQA-aware as vLLM's: query heads split evenly; KV heads split
/// evenly when they divide by the rank count, otherwise each KV head is replicated on the ranks whose query heads read it;
/// the MLP's intermediate columns split evenly. q/k/v and gate/up are column-parallel (a rank holds its heads' rows), o
/// and down row-parallel (its heads' columns), so each block's output is a sum over ranks (one all-reduce). ADR 0020.
/// </summary>
internal sealed record TensorParallelPlan(int Rank, int Ranks, int QueryHeadStart, int QueryHeads, int KvHeadStart, int KvHeads,
    int IntermediateStart, int Intermediate)
{
    /// <summary>Rank <paramref name="rank"/> of <paramref name="ranks"/> for <paramref name="config"/>.</summary>
    /// <exception cref="ArgumentException">The heads or the MLP do not split over <paramref name="ranks"/>.</exception>
    public static TensorParallelPlan For(DecoderConfig config, int rank, int ranks)
    {
        ArgumentNullException.ThrowIfNull(config);
        Guard.Positive(ranks, nameof(ranks));
        if (rank < 0 || rank >= ranks) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"Expected a rank from 0 to {ranks - 1}.");
        int heads = config.NumAttentionHeads, kvHeads = config.NumKeyValueHeads, intermediate = config.IntermediateSize;
        if (config.Family.QkNorm == QkNorm.WholeProjection || config.Family.FusedProjections)
            throw new NotSupportedException(
                $"model_type '{config.ModelType}' cannot be split by heads yet: its q/k norm spans every head, or its q/k/v are one fused matrix.");
        if (heads % ranks != 0)
            throw new ArgumentException($"num_attention_heads ({heads}) must divide by the rank count ({ranks}).", nameof(ranks));
        if (intermediate % ranks != 0)
            throw new ArgumentException($"intermediate_size ({intermediate}) must divide by the rank count ({ranks}).", nameof(ranks));
        if (kvHeads % ranks != 0 && ranks % kvHeads != 0)
            throw new ArgumentException(
                $"num_key_value_heads ({kvHeads}) must divide by the rank count ({ranks}), or the rank count by it (each KV head then replicated).", nameof(ranks));
        int queryHeads = heads / ranks;
        var (kvStart, kvCount) = kvHeads % ranks == 0
            ? (rank * (kvHeads / ranks), kvHeads / ranks)      // split
            : (rank / (ranks / kvHeads), 1);                   // replicated: ranks / kvHeads ranks share each KV head
        return new TensorParallelPlan(rank, ranks, rank * queryHeads, queryHeads, kvStart, kvCount,
            rank * (intermediate / ranks), intermediate / ranks);
    }

    /// <summary>The config of this rank's layers: its heads and its slice of the MLP, the head size unchanged.</summary>
    public DecoderConfig RankConfig(DecoderConfig config) => config with
    {
        NumAttentionHeads = QueryHeads,
        NumKeyValueHeads = KvHeads,
        IntermediateSize = Intermediate,
        HeadDim = config.HeadDim,
    };

    /// <summary>
    /// This rank's slice of one layer's weights, by HF key (<c>self_attn.q_proj.weight</c>, ...). The o_proj bias, added
    /// after the sum over ranks in the unsplit layer, is kept by rank 0 alone.
    /// </summary>
    public Dictionary<string, Tensor> Slice(IReadOnlyDictionary<string, Tensor> layer, int headDim)
    {
        Tensor Rows(Tensor t, long start, long count) => t.narrow(0, start, count);
        Tensor Columns(Tensor t, long start, long count) => t.narrow(1, start, count);
        long q0 = (long)QueryHeadStart * headDim, q = (long)QueryHeads * headDim, kv0 = (long)KvHeadStart * headDim, kv = (long)KvHeads * headDim;
        var slice = new Dictionary<string, Tensor>();
        foreach (var (key, value) in layer)
            slice[key] = key switch
            {
                "self_attn.q_proj.weight" or "self_attn.q_proj.bias" => Rows(value, q0, q),
                "self_attn.k_proj.weight" or "self_attn.k_proj.bias" or "self_attn.v_proj.weight" or "self_attn.v_proj.bias" => Rows(value, kv0, kv),
                "self_attn.o_proj.weight" => Columns(value, q0, q),
                "self_attn.o_proj.bias" => Rank == 0 ? value : zeros_like(value),
                "mlp.gate_proj.weight" or "mlp.up_proj.weight" => Rows(value, IntermediateStart, Intermediate),
                "mlp.down_proj.weight" => Columns(value, IntermediateStart, Intermediate),
                "input_layernorm.weight" or "post_attention_layernorm.weight" or "pre_feedforward_layernorm.weight"
                    or "post_feedforward_layernorm.weight" => value,
                "self_attn.q_norm.weight" or "self_attn.k_norm.weight" => value, // per head: the same weights on every head
                _ => throw new ArgumentException($"'{key}' is not a decoder layer's weight this plan knows how to split.", nameof(layer)),
            };
        return slice;
    }
}
