using BenchmarkDotNet.Attributes;
using GqaTransformer;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks;

/// <summary>
/// What Gemma's attention costs the fused CPU decode step against a Llama of the same cache bytes: one decode step of
/// <c>FusedCpuDecode</c> at 4096 tokens, batch 1, for a Llama group (8 KV heads × 128, G = 4) and a Gemma 2/3 group
/// (4 KV heads × 256, G = 2: the same bytes per token), each with and without the soft-cap (cap 50, Gemma 2's), so
/// the cap's cost and the head size's both show as ratios to the Llama step in one run.
/// </summary>
public class SoftCapDecodeBenchmarks
{
    private const int Context = 4096;
    private const double Cap = 50.0;
    private Tensor _llamaQ = null!, _llamaK = null!, _llamaV = null!, _gemmaQ = null!, _gemmaK = null!, _gemmaV = null!;

    /// <summary>The cache's dtype.</summary>
    [Params(ScalarType.Float32, ScalarType.BFloat16)] public ScalarType Dtype { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        manual_seed(0);
        (_llamaQ, _llamaK, _llamaV) = Group(kvHeads: 8, group: 4, headDim: 128);
        (_gemmaQ, _gemmaK, _gemmaV) = Group(kvHeads: 4, group: 2, headDim: 256);
    }

    private (Tensor Q, Tensor K, Tensor V) Group(int kvHeads, int group, int headDim)
        => (randn(1, kvHeads, group, headDim).DetachFromDisposeScope(),
            randn(1, kvHeads, Context + 64, headDim).to(Dtype).narrow(2, 0, Context).DetachFromDisposeScope(),   // cache views
            randn(1, kvHeads, Context + 64, headDim).to(Dtype).narrow(2, 0, Context).DetachFromDisposeScope());

    [Benchmark(Baseline = true, Description = "Llama 8x128 G4")]
    public void Llama()
    {
        using var scope = NewDisposeScope();
        FusedCpuDecode.Run(_llamaQ, _llamaK, _llamaV, null, 1 / Math.Sqrt(128), null);
    }

    [Benchmark(Description = "Llama 8x128 G4, cap")]
    public void LlamaCapped()
    {
        using var scope = NewDisposeScope();
        FusedCpuDecode.Run(_llamaQ, _llamaK, _llamaV, null, 1 / Math.Sqrt(128), Cap);
    }

    [Benchmark(Description = "Gemma 4x256 G2")]
    public void Gemma()
    {
        using var scope = NewDisposeScope();
        FusedCpuDecode.Run(_gemmaQ, _gemmaK, _gemmaV, null, 1 / Math.Sqrt(256), null);
    }

    [Benchmark(Description = "Gemma 4x256 G2, cap")]
    public void GemmaCapped()
    {
        using var scope = NewDisposeScope();
        FusedCpuDecode.Run(_gemmaQ, _gemmaK, _gemmaV, null, 1 / Math.Sqrt(256), Cap);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var t in new[] { _llamaQ, _llamaK, _llamaV, _gemmaQ, _gemmaK, _gemmaV }) t.Dispose();
    }
}
