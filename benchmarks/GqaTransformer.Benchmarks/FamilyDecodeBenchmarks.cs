using BenchmarkDotNet.Attributes;
using GqaTransformer;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks;

/// <summary>
/// One CPU decode step of each family at the same bytes per step (issue 29: no family more than 10% slower than Llama):
/// 8 layers, hidden 1024, 16 query heads / 4 KV heads × 64, MLP 2816, vocab 32000, untied, bf16 weights and cache, the
/// cache holding <see cref="Context"/> tokens (windows longer than that, so every family reads the same cache). What
/// differs is the family's own work: q/k norms, sandwich norms, GELU, soft-caps, partial or absent RoPE.
/// </summary>
public class FamilyDecodeBenchmarks
{
    private DecoderModel _model = null!;
    private KvCache _cache = null!;
    private Tensor _token = null!;

    /// <summary>The family.</summary>
    [Params("llama", "qwen3", "gemma2", "gemma3_text", "phi3", "smollm3", "olmo2")] public string ModelType { get; set; } = "llama";

    /// <summary>Tokens in the cache.</summary>
    [Params(1024)] public int Context { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var config = new DecoderConfig
        {
            ModelType = ModelType, HiddenSize = 1024, NumAttentionHeads = 16, NumKeyValueHeads = 4, HeadDim = 64, NumHiddenLayers = 8,
            IntermediateSize = 2816, VocabSize = 32000, RmsNormEps = 1e-6, MaxPositionEmbeddings = 8192,
        };
        config = ModelType switch
        {
            "gemma2" => config with { SlidingWindow = 4096, QueryPreAttnScalar = 64, AttnLogitSoftcapping = 50, FinalLogitSoftcapping = 30 },
            "gemma3_text" => config with { SlidingWindow = 4096, QueryPreAttnScalar = 64, RopeLocalBaseFreq = 10_000 },
            "phi3" => config with { PartialRotaryFactor = 0.75 },
            _ => config,
        };
        manual_seed(0);
        _model = new DecoderModel(config, ScalarType.BFloat16);
        _model.eval();
        _cache = _model.CreateCache(1, Context + 1);
        using var scope = NewDisposeScope();
        _model.forward(randint(0, 32000, [1, Context], ScalarType.Int64), _cache, lastTokenOnly: true);
        _token = tensor(new long[] { 42 }).view(1, 1).DetachFromDisposeScope();
    }

    [Benchmark(Description = "decode step")]
    public void Step()
    {
        using var scope = NewDisposeScope();
        _model.forward(_token, _cache);
        _cache.RewindTo(Context);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _token.Dispose();
        _cache.Dispose();
        _model.Dispose();
    }
}
