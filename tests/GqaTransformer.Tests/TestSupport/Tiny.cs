using GqaTransformer;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>Small configs and helpers shared by the tests.</summary>
internal static class Tiny
{
    public static DecoderConfig Config(int heads = 8, int kvHeads = 2, int hidden = 64, int? headDim = null, int layers = 2,
        int vocab = 97, int intermediate = 96, int? slidingWindow = null) => new()
    {
        HiddenSize = hidden,
        NumAttentionHeads = heads,
        NumKeyValueHeads = kvHeads,
        HeadDim = headDim ?? hidden / heads,
        NumHiddenLayers = layers,
        VocabSize = vocab,
        IntermediateSize = intermediate,
        RmsNormEps = 1e-5,
        SlidingWindow = slidingWindow,
    };

    public static DecoderModel Model(DecoderConfig config, int seed = 1234)
    {
        manual_seed(seed);
        var model = new DecoderModel(config);
        model.eval();
        return model;
    }

    public static Tensor Ids(long batch, long tokens, int vocab, int seed = 7)
    {
        var generator = new torch.Generator((ulong)seed);
        return randint(0, vocab, [batch, tokens], ScalarType.Int64, generator: generator);
    }

    public static double MaxAbsDiff(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();
    }
}
