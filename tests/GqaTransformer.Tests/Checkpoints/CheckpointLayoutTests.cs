using System.Diagnostics;
using System.Text.Json.Nodes;
using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// The tensor list worked out from a config (<see cref="CheckpointLayout"/>) against the model it describes, and a
/// config checked against the weights beside it before any module is built (issue 28).
/// </summary>
public class CheckpointLayoutTests
{
    public static TheoryData<string> FixtureDirectories()
    {
        var data = new TheoryData<string>();
        foreach (var folder in new[] { "hf-tiny", "hf-ref" })
            foreach (var directory in Directory.GetDirectories(Path.Combine(Fixtures.Root, folder)).Order(StringComparer.Ordinal))
                data.Add(Path.Combine(folder, Path.GetFileName(directory)));
        return data;
    }

    [Theory]
    [MemberData(nameof(FixtureDirectories))]
    public void The_layout_of_a_config_is_the_state_dict_of_the_model_it_builds(string fixture)
    {
        // the two must never drift: the checkpoint is checked against the layout, then loaded into the model
        var config = DecoderConfig.FromFile(Path.Combine(Fixtures.Root, fixture, "config.json"));
        foreach (var variant in new[] { config, config with { TieWordEmbeddings = !config.TieWordEmbeddings }, config with { AttentionBias = true } })
        {
            using var scope = NewDisposeScope();
            using var model = new DecoderModel(variant);
            var actual = model.state_dict().ToDictionary(p => p.Key, p => p.Value.shape);
            var layout = new CheckpointLayout(variant);
            var expected = layout.Tensors().ToList();

            expected.Select(t => t.Name).Should().Equal(actual.Keys, $"{fixture} tied={variant.TieWordEmbeddings} bias={variant.AttentionBias}");
            layout.Count.Should().Be(actual.Count);
            foreach (var (name, shape) in expected)
            {
                shape.Should().Equal(actual[name], name);
                layout.ShapeOf(name).Should().Equal(actual[name], name);
            }
        }
    }

    [Fact]
    public void Only_the_names_the_model_has_are_looked_up()
    {
        var layout = new CheckpointLayout(Tiny.Config(layers: 2, hidden: 64, heads: 8, kvHeads: 2, vocab: 97, intermediate: 96));
        layout.ShapeOf("model.layers.1.mlp.down_proj.weight").Should().Equal(64, 96);
        layout.ShapeOf("model.layers.0.self_attn.k_proj.weight").Should().Equal(16, 64);
        layout.ShapeOf("lm_head.weight").Should().Equal(97, 64);
        foreach (var name in new[] { "model.layers.2.mlp.down_proj.weight", "model.layers.01.mlp.down_proj.weight", "model.layers.-1.mlp.down_proj.weight",
                     "model.layers.+1.mlp.down_proj.weight", "model.layers. 1.mlp.down_proj.weight", "model.layers.1", "model.layers..mlp.down_proj.weight",
                     "model.layers.99999999999.mlp.down_proj.weight", "model.layers.1.self_attn.q_proj.bias", "model.layers.1.mlp.down_proj.weight.x", "x" })
            layout.ShapeOf(name).Should().BeNull(name);
        layout.Ignorable("model.layers.0.self_attn.rotary_emb.inv_freq").Should().BeTrue();
        layout.Ignorable("lm_head.weight").Should().BeFalse("the head is not tied");
        new CheckpointLayout(Tiny.Config() with { TieWordEmbeddings = true }).Ignorable("lm_head.weight").Should().BeTrue();
    }

    [Theory]
    [InlineData("num_hidden_layers", 1 << 30, "*lacks 9663676398 tensor(s)*1073741824 layers*model.layers.2.input_layernorm.weight*")]
    [InlineData("num_hidden_layers", int.MaxValue, "*lacks*model.layers.2.input_layernorm.weight*")]
    [InlineData("hidden_size", 1 << 30, "*'model.embed_tokens.weight' has shape [256, 128] in '*model.safetensors', but config.json*expects [256, 1073741824]*")]
    [InlineData("intermediate_size", 1 << 30, "*'model.layers.0.mlp.gate_proj.weight' has shape [344, 128]*expects [1073741824, 128]*")]
    [InlineData("vocab_size", 1 << 30, "*'model.embed_tokens.weight' has shape [256, 128]*expects [1073741824, 128]*")]
    [InlineData("num_attention_heads", 1 << 26, "*'model.layers.0.self_attn.q_proj.weight' has shape [128, 128]*expects [1073741824, 128]*")]
    public void A_config_that_claims_more_than_the_weights_hold_is_refused_before_building_anything(string field, int value, string message)
    {
        // The reported case: 2^30 layers beside a 2-layer file used to build the whole model first (past 20 s, 7 GB).
        using var directory = CopyOf(Fixtures.HfTiny("llama_gqa"));
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(directory.Path, "config.json")))!;
        config[field] = value;
        File.WriteAllText(Path.Combine(directory.Path, "config.json"), config.ToJsonString());
        TorchBackend.EnsureLoaded();

        var (error, elapsed, growth) = Watch(() => DecoderModel.FromPretrained(directory.Path).Dispose());

        error.Should().BeOfType<InvalidDataException>().Which.Message.Should().Match(message);
        elapsed.Should().BeLessThan(TimeSpan.FromSeconds(5), "the check costs the files' tensor count, not the config's claims (a guard against the old build-first path)");
        growth.Should().BeLessThan(200L << 20, "nothing is allocated for the claimed shapes");
    }

    [Fact]
    public void A_config_that_claims_fewer_layers_than_the_weights_hold_names_the_extra_tensors()
    {
        using var directory = CopyOf(Fixtures.HfTiny("llama_gqa"));
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(directory.Path, "config.json")))!;
        config["num_hidden_layers"] = 1;
        File.WriteAllText(Path.Combine(directory.Path, "config.json"), config.ToJsonString());
        FluentActions.Invoking(() => DecoderModel.FromPretrained(directory.Path)).Should().Throw<InvalidDataException>()
            .WithMessage("*holds 9 tensor(s) the model of config.json (1 layers*does not have: model.layers.1.input_layernorm.weight*");
    }

    [Fact]
    public void A_tied_config_beside_a_file_with_lm_head_loads_and_ignores_it()
    {
        using var directory = CopyOf(Fixtures.HfTiny("llama_gqa"));
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(directory.Path, "config.json")))!;
        config["tie_word_embeddings"] = true;
        File.WriteAllText(Path.Combine(directory.Path, "config.json"), config.ToJsonString());
        using var scope = NewDisposeScope();
        using var model = DecoderModel.FromPretrained(directory.Path);
        model.state_dict().Keys.Should().NotContain("lm_head.weight");
        using var file = SafetensorsFile.Open(Path.Combine(directory.Path, "model.safetensors"));
        model.state_dict()["model.embed_tokens.weight"].eq(file.Read("model.embed_tokens.weight")).all().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void An_index_that_disagrees_with_its_shards_is_refused_by_name()
    {
        using var directory = CopyOf(Fixtures.HfRef("llama_sharded"));
        string indexPath = Path.Combine(directory.Path, "model.safetensors.index.json");
        string original = File.ReadAllText(indexPath);
        JsonObject Index() => (JsonObject)JsonNode.Parse(original)!;
        void Write(JsonObject index) => File.WriteAllText(indexPath, index.ToJsonString());
        Func<DecoderModel> load = () => DecoderModel.FromPretrained(directory.Path);

        var moved = Index();
        moved["weight_map"]!["model.norm.weight"] = "model-00001-of-00005.safetensors";
        Write(moved);
        load.Should().Throw<InvalidDataException>().WithMessage("*'model.norm.weight' is in '*model-0000?-of-00005.safetensors', but*places it in 'model-00001-of-00005.safetensors'*");

        var dropped = Index();
        ((JsonObject)dropped["weight_map"]!).Remove("model.norm.weight");
        Write(dropped);
        load.Should().Throw<InvalidDataException>().WithMessage("*'model.norm.weight'*does not list it*");

        var phantom = Index();
        phantom["weight_map"]!["model.layers.7.mlp.up_proj.weight"] = "model-00001-of-00005.safetensors";
        Write(phantom);
        load.Should().Throw<InvalidDataException>().WithMessage("*places tensor 'model.layers.7.mlp.up_proj.weight' in 'model-00001-of-00005.safetensors', which does not hold it*");

        foreach (var escape in new[] { "../model-00001-of-00005.safetensors", "/etc/passwd", "..", "" })
        {
            var outside = Index();
            outside["weight_map"]!["model.norm.weight"] = escape;
            Write(outside);
            load.Should().Throw<InvalidDataException>().WithMessage($"*maps 'model.norm.weight' to '{escape}', which is not a file name in the checkpoint directory*");
        }

        var number = Index();
        number["weight_map"]!["model.norm.weight"] = 5;
        Write(number);
        load.Should().Throw<InvalidDataException>().WithMessage("*maps 'model.norm.weight' to no file name*");

        File.WriteAllText(indexPath, original.Replace("\"model.norm.weight\":", "\"model.norm.weight\": \"model-00001-of-00005.safetensors\", \"model.norm.weight\":"));
        load.Should().Throw<InvalidDataException>().WithMessage("*lists tensor 'model.norm.weight' twice*");

        File.WriteAllText(indexPath, "[1, 2]");
        load.Should().Throw<InvalidDataException>().WithMessage("*weight_map*");

        File.WriteAllText(indexPath, original);
        using var scope = NewDisposeScope();
        load().Dispose();
    }

    [Fact]
    public void A_checkpoint_whose_tensors_alias_each_other_is_refused()
    {
        // lm_head.weight pointed at the embedding's bytes: before, it loaded and the head ran on the embedding
        using var scope = NewDisposeScope();
        using var directory = new Fixtures.TempDirectory();
        using var model = Tiny.Model(Tiny.Config());
        model.SavePretrained(directory.Path);
        string weights = Path.Combine(directory.Path, "model.safetensors");
        var state = model.state_dict().OrderBy(p => p.Key, StringComparer.Ordinal).ToList();
        var header = new JsonObject();
        var data = new MemoryStream();
        var ranges = new Dictionary<string, long[]>();
        foreach (var (name, tensor) in state.Where(p => p.Key != "lm_head.weight"))
        {
            long begin = data.Position;
            data.Write(tensor.contiguous().bytes);
            ranges[name] = [begin, data.Position];
        }
        ranges["lm_head.weight"] = ranges["model.embed_tokens.weight"];
        foreach (var (name, tensor) in state)
            header[name] = new JsonObject { ["dtype"] = "F32", ["shape"] = new JsonArray([.. tensor.shape.Select(d => (JsonNode)d)]), ["data_offsets"] = new JsonArray(ranges[name][0], ranges[name][1]) };
        byte[] json = System.Text.Encoding.UTF8.GetBytes(header.ToJsonString());
        File.WriteAllBytes(weights, [.. BitConverter.GetBytes((ulong)json.Length), .. json, .. data.ToArray()]);

        FluentActions.Invoking(() => DecoderModel.FromPretrained(directory.Path)).Should().Throw<InvalidDataException>()
            .WithMessage("*model.safetensors*overlap tensor*")
            .Where(e => e.Message.Contains("'lm_head.weight'") && e.Message.Contains("'model.embed_tokens.weight'"));
    }

    private static Fixtures.TempDirectory CopyOf(string fixture)
    {
        var directory = new Fixtures.TempDirectory();
        foreach (var file in Directory.GetFiles(fixture))
            File.Copy(file, Path.Combine(directory.Path, Path.GetFileName(file)));
        return directory;
    }

    /// <summary>Runs <paramref name="action"/> on another thread (a runaway one is abandoned after 10 s), with its time and the process's peak memory growth.</summary>
    private static (Exception? Error, TimeSpan Elapsed, long Growth) Watch(Action action)
    {
        using var process = Process.GetCurrentProcess();
        long before = process.WorkingSet64, peak = before;
        var clock = Stopwatch.StartNew();
        var task = Task.Run(action);
        while (!task.IsCompleted && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(2);
            process.Refresh();
            peak = Math.Max(peak, process.WorkingSet64);
        }
        clock.Stop();
        process.Refresh();
        peak = Math.Max(peak, process.WorkingSet64);
        if (!task.IsCompleted) return (new TimeoutException($"still running after {clock.Elapsed.TotalSeconds:0} s"), clock.Elapsed, peak - before);
        return (task.Exception?.InnerException, clock.Elapsed, peak - before);
    }
}
