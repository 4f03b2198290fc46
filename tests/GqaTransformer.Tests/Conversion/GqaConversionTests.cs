using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class GqaConversionTests
{
    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();

    [Theory]
    [InlineData(KvHeadInit.Mean)]
    [InlineData(KvHeadInit.First)]
    public void Pooling_matches_a_textbook_loop_over_the_heads_of_each_group(KvHeadInit init)
    {
        using var scope = NewDisposeScope();
        const int heads = 6, kv = 2, d = 3, hidden = 5, g = heads / kv;
        var weight = randn(heads * d, hidden);
        var w = weight.data<float>().ToArray();
        var pooled = GqaConversion.Pool(weight, heads, kv, init).data<float>().ToArray();
        for (int j = 0; j < kv; j++)
            for (int i = 0; i < d; i++)
                for (int c = 0; c < hidden; c++)
                {
                    double expected = init == KvHeadInit.First
                        ? w[((j * g) * d + i) * hidden + c]
                        : Enumerable.Range(0, g).Average(m => (double)w[((j * g + m) * d + i) * hidden + c]);
                    pooled[(j * d + i) * hidden + c].Should().BeApproximately((float)expected, 1e-6f);
                }
        var bias = randn(heads * d);
        GqaConversion.Pool(bias, heads, kv, init).shape.Should().Equal([kv * d]);
    }

    [Fact]
    public void Random_heads_are_seeded_and_small()
    {
        using var scope = NewDisposeScope();
        var weight = randn(8 * 16, 64);
        var a = GqaConversion.Pool(weight, 8, 2, KvHeadInit.Random, new torch.Generator(3));
        var b = GqaConversion.Pool(weight, 8, 2, KvHeadInit.Random, new torch.Generator(3));
        Same(a, b).Should().BeTrue();
        a.std().item<float>().Should().BeInRange(0.018f, 0.022f);
    }

    [Fact]
    public void The_same_number_of_kv_heads_is_an_exact_copy()
    {
        using var scope = NewDisposeScope();
        using var directory = new Fixtures.TempDirectory();
        GqaConversion.ConvertCheckpoint(Fixtures.HfTiny("llama_gqa"), directory.Path, 2);
        using var original = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        using var copy = DecoderModel.FromPretrained(directory.Path);
        foreach (var (name, tensor) in original.state_dict())
            Same(copy.state_dict()[name], tensor).Should().BeTrue(name);
    }

    [Fact]
    public void A_model_whose_heads_agree_within_each_group_converts_without_changing_its_logits()
    {
        // Make the MHA fixture's K/V heads equal within each group of 4; then mean, first-head and MHA all compute the same.
        using var scope = NewDisposeScope();
        using var mhaDirectory = new Fixtures.TempDirectory();
        using var gqaDirectory = new Fixtures.TempDirectory();
        using (var mha = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_mha")))
        {
            int heads = mha.Config.NumKeyValueHeads, d = mha.Config.HeadDim;
            using (no_grad())
                foreach (var (name, tensor) in mha.state_dict().Where(p => p.Key.Contains("k_proj") || p.Key.Contains("v_proj")))
                    for (int h = 0; h < heads; h++)
                        tensor.narrow(0, h * d, d).copy_(tensor.narrow(0, h / 4 * 4 * d, d));
            mha.SavePretrained(mhaDirectory.Path);
        }
        var config = GqaConversion.ConvertCheckpoint(mhaDirectory.Path, gqaDirectory.Path, 2);
        config.NumKeyValueHeads.Should().Be(2);
        using var before = DecoderModel.FromPretrained(mhaDirectory.Path);
        using var after = DecoderModel.FromPretrained(gqaDirectory.Path);
        after.Config.NumKeyValueHeads.Should().Be(2);
        var ids = Tiny.Ids(2, 12, before.Config.VocabSize);
        Tiny.MaxAbsDiff(after.forward(ids), before.forward(ids)).Should().BeLessThan(1e-5);
    }

    [Fact]
    public void Shards_stay_shards_and_every_other_tensor_is_copied_unchanged()
    {
        using var scope = NewDisposeScope();
        using var directory = new Fixtures.TempDirectory();
        string source = Fixtures.HfRef("llama_sharded");
        using var original = DecoderModel.FromPretrained(source);
        int heads = original.Config.NumKeyValueHeads;
        GqaConversion.ConvertCheckpoint(source, directory.Path, 1, KvHeadInit.First);
        Directory.GetFiles(directory.Path, "model-*.safetensors").Length.Should().Be(5);
        File.Exists(Path.Combine(directory.Path, "model.safetensors.index.json")).Should().BeTrue();
        using var converted = DecoderModel.FromPretrained(directory.Path);
        var before = original.state_dict();
        foreach (var (name, tensor) in converted.state_dict())
        {
            if (name.Contains("k_proj") || name.Contains("v_proj"))
                Same(tensor, before[name].narrow(0, 0, before[name].size(0) / heads)).Should().BeTrue(name + " is the first head");
            else
                Same(tensor, before[name]).Should().BeTrue(name);
        }
    }

    [Fact]
    public void Bad_arguments_are_named_before_anything_is_written()
    {
        using var directory = new Fixtures.TempDirectory();
        string target = Path.Combine(directory.Path, "out");
        FluentActions.Invoking(() => GqaConversion.ConvertCheckpoint(Fixtures.HfTiny("llama_mha"), target, 3))
            .Should().Throw<ArgumentOutOfRangeException>().WithParameterName("numKvHeads").WithMessage("*divide the model's 8*");
        FluentActions.Invoking(() => GqaConversion.ConvertCheckpoint(Fixtures.HfTiny("llama_mha"), Fixtures.HfTiny("llama_mha"), 4))
            .Should().Throw<ArgumentException>().WithParameterName("destination");
        FluentActions.Invoking(() => GqaConversion.ConvertCheckpoint(Path.Combine(directory.Path, "missing"), target, 1))
            .Should().Throw<DirectoryNotFoundException>();
        Directory.Exists(target).Should().BeFalse();
    }
}
