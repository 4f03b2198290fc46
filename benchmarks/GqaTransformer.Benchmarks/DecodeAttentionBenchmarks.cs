using BenchmarkDotNet.Attributes;
using GqaTransformer;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks;

/// <summary>
/// One decode step of attention (query length 1) over a KV cache of <see cref="Context"/> tokens:
/// 32 query heads of size 128, batch 1, float32. Compares KV-head counts (MHA 32, GQA 8 and 4, MQA 1) and a
/// naive GQA that first copies K/V out per query head (what HF's eager path and Microsoft.ML.GenAI do).
/// </summary>
[MemoryDiagnoser(false)]
public class DecodeAttentionBenchmarks
{
    private Tensor _query = null!;
    private Tensor _keys = null!;
    private Tensor _values = null!;

    /// <summary>KV heads: 32 is MHA, 1 is MQA.</summary>
    [Params(32, 8, 1)] public int KvHeads { get; set; }

    /// <summary>Tokens in the cache.</summary>
    [Params(4096)] public int Context { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        manual_seed(0);
        _query = randn(1, 32, 1, 128).DetachFromDisposeScope();
        _keys = randn(1, KvHeads, Context, 128).DetachFromDisposeScope();
        _values = randn(1, KvHeads, Context, 128).DetachFromDisposeScope();
    }

    [Benchmark(Baseline = true, Description = "GQA, K/V read in place")]
    public void Grouped()
    {
        using var scope = NewDisposeScope();
        MultiHeadAttention.GroupedScaledDotProduct(_query, _keys, _values, null, causal: true);
    }

    [Benchmark(Description = "GQA, K/V repeated per query head")]
    public void Materialised()
    {
        using var scope = NewDisposeScope();
        int group = 32 / KvHeads;
        nn.functional.scaled_dot_product_attention(_query, _keys.repeat_interleave(group, 1), _values.repeat_interleave(group, 1));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _query.Dispose();
        _keys.Dispose();
        _values.Dispose();
    }
}
