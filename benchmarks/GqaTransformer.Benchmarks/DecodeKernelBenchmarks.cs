using BenchmarkDotNet.Attributes;
using GqaTransformer;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks;

/// <summary>
/// The two CPU decode kernels on the same tensors: the fused single pass (FusedCpuDecode) against the matmul path
/// (K·qᵀ, softmax, ·V). 32 query heads × 128, batch 1, fp32, keys and values as views of a cache.
/// </summary>
public class DecodeKernelBenchmarks
{
    private Tensor _folded = null!, _keys = null!, _values = null!;

    /// <summary>KV heads out of 32 query heads.</summary>
    [Params(32, 8, 4, 1)] public int KvHeads { get; set; }

    /// <summary>Tokens in the cache.</summary>
    [Params(4096)] public int Context { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        manual_seed(0);
        _folded = randn(1, KvHeads, 32 / KvHeads, 128).DetachFromDisposeScope();
        _keys = randn(1, KvHeads, Context + 64, 128).narrow(2, 0, Context).DetachFromDisposeScope();
        _values = randn(1, KvHeads, Context + 64, 128).narrow(2, 0, Context).DetachFromDisposeScope();
    }

    [Benchmark(Baseline = true, Description = "matmul path")]
    public void Matmul()
    {
        using var scope = NewDisposeScope();
        MultiHeadAttention.DecodeByMatmul(_folded, _keys, _values, null, AttentionScoring.Plain(128));
    }

    [Benchmark(Description = "fused single pass")]
    public void Fused()
    {
        using var scope = NewDisposeScope();
        FusedCpuDecode.Run(_folded, _keys, _values);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _folded.Dispose();
        _keys.Dispose();
        _values.Dispose();
    }
}
