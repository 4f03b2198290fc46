using System.Text;
using FluentAssertions;
using GqaTransformer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class CheckpointTests
{
    [Theory]
    [InlineData(long.MaxValue)] // one file
    [InlineData(60_000)]        // shards with an index
    public void SavePretrained_round_trips_bit_exactly(long maxShardBytes)
    {
        using var scope = NewDisposeScope();
        using var directory = new Fixtures.TempDirectory();
        using var model = Tiny.Model(Tiny.Config());
        model.SavePretrained(directory.Path, maxShardBytes);
        bool sharded = maxShardBytes < long.MaxValue;
        File.Exists(Path.Combine(directory.Path, "model.safetensors.index.json")).Should().Be(sharded);
        int files = Directory.GetFiles(directory.Path, "*.safetensors").Length;
        if (sharded) files.Should().BeGreaterThan(1); else files.Should().Be(1);

        using var loaded = DecoderModel.FromPretrained(directory.Path);
        loaded.Config.Should().BeEquivalentTo(model.Config, o => o.Excluding(c => c.TorchDtype).Excluding(c => c.Architectures));
        var original = model.state_dict();
        foreach (var (name, tensor) in loaded.state_dict())
            tensor.eq(original[name]).all().item<bool>().Should().BeTrue(name);
    }

    [Fact]
    public void A_bf16_model_saves_bf16_and_loads_into_float32_exactly()
    {
        using var scope = NewDisposeScope();
        using var directory = new Fixtures.TempDirectory();
        using var model = Tiny.Model(Tiny.Config() with { TieWordEmbeddings = true });
        model.to(ScalarType.BFloat16);
        model.SavePretrained(directory.Path);
        using (var file = SafetensorsFile.Open(Path.Combine(directory.Path, "model.safetensors")))
        {
            file.Entries.Values.Should().AllSatisfy(e => e.Dtype.Should().Be(ScalarType.BFloat16));
            file.Entries.Keys.Should().NotContain("lm_head.weight");
            file.Metadata["format"].Should().Be("pt");
        }
        using var loaded = DecoderModel.FromPretrained(directory.Path, ScalarType.Float32);
        loaded.Dtype.Should().Be(ScalarType.Float32);
        foreach (var (name, tensor) in model.state_dict())
            loaded.state_dict()[name].eq(tensor.to(ScalarType.Float32)).all().item<bool>().Should().BeTrue(name);
    }

    [Fact]
    public void A_float16_checkpoint_loads_into_float32_and_bfloat16()
    {
        using var scope = NewDisposeScope();
        using var directory = new Fixtures.TempDirectory();
        using var model = Tiny.Model(Tiny.Config());
        model.to(ScalarType.Float16);
        model.SavePretrained(directory.Path);
        DecoderConfig.FromFile(Path.Combine(directory.Path, "config.json")).TorchDtype.Should().Be("float16");
        using var fp32 = DecoderModel.FromPretrained(directory.Path);
        using var bf16 = DecoderModel.FromPretrained(directory.Path, ScalarType.BFloat16);
        foreach (var (name, tensor) in model.state_dict())
        {
            fp32.state_dict()[name].eq(tensor.to(ScalarType.Float32)).all().item<bool>().Should().BeTrue(name);
            bf16.state_dict()[name].dtype.Should().Be(ScalarType.BFloat16);
        }
    }

    [Fact]
    public void Missing_unexpected_and_misshapen_tensors_are_named()
    {
        using var scope = NewDisposeScope();
        using var directory = new Fixtures.TempDirectory();
        using var model = Tiny.Model(Tiny.Config());
        model.SavePretrained(directory.Path);
        string weights = Path.Combine(directory.Path, "model.safetensors");
        var good = model.state_dict();

        SafetensorsFile.Save(weights, good.Where(p => p.Key != "model.norm.weight"));
        Load().Should().Throw<InvalidDataException>().WithMessage("*lacks 1 tensor(s)*model.norm.weight*");

        SafetensorsFile.Save(weights, good.Append(new("model.extra.weight", zeros(3))));
        Load().Should().Throw<InvalidDataException>().WithMessage("*does not have: model.extra.weight*");

        SafetensorsFile.Save(weights, good.Select(p => p.Key == "model.norm.weight" ? new(p.Key, zeros(63)) : p));
        Load().Should().Throw<InvalidDataException>().WithMessage("*'model.norm.weight' has shape [63]*expects [64]*");

        SafetensorsFile.Save(weights, good.Select(p => p.Key == "model.norm.weight" ? new(p.Key, zeros([64], ScalarType.Int64)) : p));
        Load().Should().Throw<InvalidDataException>().WithMessage("*'model.norm.weight'*dtype Int64*");

        Func<DecoderModel> Load() => () => DecoderModel.FromPretrained(directory.Path);
    }

    [Fact]
    public void Corrupt_and_truncated_files_give_errors_not_crashes()
    {
        using var scope = NewDisposeScope();
        using var directory = new Fixtures.TempDirectory();
        using var model = Tiny.Model(Tiny.Config());
        model.SavePretrained(directory.Path);
        string weights = Path.Combine(directory.Path, "model.safetensors");
        byte[] original = File.ReadAllBytes(weights);
        long headerSize = BitConverter.ToInt64(original, 0);

        File.WriteAllBytes(weights, original[..^100]); // truncated data
        Load().Should().Throw<InvalidDataException>().WithMessage("*point outside the file*");

        File.WriteAllBytes(weights, original[..(int)(headerSize / 2)]); // truncated header
        Load().Should().Throw<InvalidDataException>().WithMessage("*header*truncated*");

        File.WriteAllBytes(weights, original[..5]);
        Load().Should().Throw<InvalidDataException>().WithMessage("*too short*");

        var hugeHeader = (byte[])original.Clone();
        BitConverter.GetBytes(long.MaxValue / 2).CopyTo(hugeHeader, 0);
        File.WriteAllBytes(weights, hugeHeader);
        Load().Should().Throw<InvalidDataException>().WithMessage("*declares a*header*");

        var garbage = (byte[])original.Clone();
        Encoding.ASCII.GetBytes("{\"x\": [").CopyTo(garbage, 8);
        File.WriteAllBytes(weights, garbage);
        Load().Should().Throw<InvalidDataException>().WithMessage("*not valid JSON*");

        WriteWithHeader(weights, """{"model.norm.weight": {"dtype": "F32", "shape": [64], "data_offsets": [0, 1000000]}}""", 256);
        Load().Should().Throw<InvalidDataException>().WithMessage("*model.norm.weight*outside the file*");

        WriteWithHeader(weights, """{"model.norm.weight": {"dtype": "F32", "shape": [64], "data_offsets": [0, 200]}}""", 256);
        Load().Should().Throw<InvalidDataException>().WithMessage("*needs 256 bytes*hold 200*");

        WriteWithHeader(weights, """{"model.norm.weight": {"dtype": "Q4", "shape": [64], "data_offsets": [0, 256]}}""", 256);
        Load().Should().Throw<InvalidDataException>().WithMessage("*dtype 'Q4' is not supported*");

        WriteWithHeader(weights, """{"model.norm.weight": {"dtype": "F32", "shape": [-64], "data_offsets": [0, 256]}}""", 256);
        Load().Should().Throw<InvalidDataException>().WithMessage("*non-negative*");

        Func<DecoderModel> Load() => () => DecoderModel.FromPretrained(directory.Path);
    }

    [Fact]
    public void Missing_files_directories_and_shards_are_named()
    {
        using var scope = NewDisposeScope();
        using var directory = new Fixtures.TempDirectory();
        FluentActions.Invoking(() => DecoderModel.FromPretrained(Path.Combine(directory.Path, "nope")))
            .Should().Throw<DirectoryNotFoundException>().WithMessage("*nope*does not exist*");
        FluentActions.Invoking(() => DecoderModel.FromPretrained(directory.Path))
            .Should().Throw<FileNotFoundException>().WithMessage("*config.json*does not exist*");

        using var model = Tiny.Model(Tiny.Config());
        model.SavePretrained(directory.Path, maxShardBytes: 60_000);
        File.Delete(Directory.GetFiles(directory.Path, "model-00002-*.safetensors").Single());
        FluentActions.Invoking(() => DecoderModel.FromPretrained(directory.Path))
            .Should().Throw<FileNotFoundException>().WithMessage("*Shard 'model-00002-of-*' listed in*does not exist*");

        foreach (var f in Directory.GetFiles(directory.Path, "model*")) File.Delete(f);
        FluentActions.Invoking(() => DecoderModel.FromPretrained(directory.Path))
            .Should().Throw<FileNotFoundException>().WithMessage("*neither model.safetensors nor model.safetensors.index.json*");
    }

    [Theory]
    [InlineData("\"model_type\": \"gpt2\"", "*model_type 'gpt2' is not supported*")]
    [InlineData("\"architectures\": [\"GPT2LMHeadModel\"]", "*Architecture 'GPT2LMHeadModel' is not supported*")]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 4}", "*rope_type 'dynamic' is not supported*")]
    [InlineData("\"hidden_act\": \"relu\"", "*hidden_act 'relu' is not supported*")]
    public void Unsupported_models_are_named(string field, string message)
    {
        string json = "{" + field + ", \"hidden_size\": 64, \"num_attention_heads\": 8, \"intermediate_size\": 96, \"num_hidden_layers\": 1, \"vocab_size\": 10}";
        FluentActions.Invoking(() => DecoderConfig.FromJson(json)).Should().Throw<NotSupportedException>().WithMessage(message);
    }

    [Fact]
    public void Malformed_configs_are_errors()
    {
        FluentActions.Invoking(() => DecoderConfig.FromJson("{\"hidden_size\": ")).Should().Throw<InvalidDataException>().WithMessage("*not valid JSON*");
        FluentActions.Invoking(() => DecoderConfig.FromJson("{\"hidden_size\": 64}")).Should().Throw<InvalidDataException>().WithMessage("*no 'num_attention_heads'*");
        FluentActions.Invoking(() => DecoderConfig.FromJson("{\"hidden_size\": \"big\", \"num_attention_heads\": 8, \"intermediate_size\": 96, \"num_hidden_layers\": 1, \"vocab_size\": 10}"))
            .Should().Throw<InvalidDataException>().WithMessage("*wrong type*");
    }

    [Fact]
    public void A_config_whose_projection_width_overflows_is_an_error()
    {
        FluentActions.Invoking(() => DecoderConfig.FromJson("{\"hidden_size\": 64, \"num_attention_heads\": 1048576, \"num_key_value_heads\": 1, \"head_dim\": 4096, \"intermediate_size\": 96, \"num_hidden_layers\": 1, \"vocab_size\": 10}"))
            .Should().Throw<InvalidDataException>().WithMessage("*num_attention_heads × head_dim (1048576 × 4096 = 4294967296) must not exceed 2147483647*");
    }

    [Fact]
    public void Llama3_rope_frequencies_follow_the_published_formula()
    {
        // Llama 3.1's rule, restated: wavelengths above old_context/low are divided by factor, below old_context/high
        // kept, and in between interpolated smoothly.
        var scaling = new RopeScaling { RopeType = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 8192 };
        using var scaled = new RotaryEmbedding(128, 500000, scaling);
        using var plain = new RotaryEmbedding(128, 500000);
        var s = scaled.InverseFrequencies;
        var p = plain.InverseFrequencies;
        for (int i = 0; i < p.Count; i++)
        {
            double wavelength = 2 * Math.PI / p[i];
            double expected = wavelength < 8192 / 4.0 ? p[i]
                : wavelength > 8192 / 1.0 ? p[i] / 8
                : (1 - (8192 / wavelength - 1) / 3) * p[i] / 8 + (8192 / wavelength - 1) / 3 * p[i];
            s[i].Should().BeApproximately((float)expected, (float)(expected * 1e-5), $"frequency {i}");
        }
    }

    private static void WriteWithHeader(string path, string header, int dataBytes)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        using var stream = File.Create(path);
        stream.Write(BitConverter.GetBytes((ulong)json.Length));
        stream.Write(json);
        stream.Write(new byte[dataBytes]);
    }
}
