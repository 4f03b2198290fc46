using FluentAssertions;
using GqaTransformer;
using GqaTransformer.Cli;
using Spectre.Console;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>The gqa commands, run in-process with a captured console.</summary>
public class CliTests
{
    /// <summary>Runs gqa; Output is standard output and standard error together.</summary>
    internal static (int ExitCode, string Output) Run(params string[] args)
    {
        var (code, stdout, stderr) = RunSplit(240, args);
        return (code, stdout + stderr);
    }

    /// <summary>
    /// Runs gqa with consoles <paramref name="width"/> wide that are not terminals (a pipe's); standard input is a
    /// terminal nobody types at, so nothing waits on it.
    /// </summary>
    internal static (int ExitCode, string Stdout, string Stderr) RunSplit(int width, params string[] args)
        => RunSplit(width, new StandardInput(TextReader.Null, IsTerminal: true), args);

    /// <summary>As <see cref="RunSplit(int, string[])"/>, with <paramref name="input"/> on standard input.</summary>
    internal static (int ExitCode, string Stdout, string Stderr) RunSplit(int width, StandardInput input, params string[] args)
    {
        var (console, output) = Console(width);
        var (errors, error) = Console(width);
        int code = CliApp.Run(args, console, errors, input);
        return (code, output.ToString(), error.ToString());
    }

    private static (IAnsiConsole, StringWriter) Console(int width)
    {
        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = width;
        return (console, writer);
    }

    [Fact]
    public void Kv_memory_prints_the_table_and_the_longest_context_in_a_budget()
    {
        var (code, output) = Run("kv-memory", "--preset", "llama-3-8b", "--context", "4k,128k", "--budget", "24GiB");
        code.Should().Be(0, output);
        output.Should().Contain("GQA 32/8 *").And.Contain("MHA 32/32").And.Contain("MQA 32/1").And.Contain("* this model");
        output.Should().Contain("512 MiB", "Llama-3-8B's bf16 cache at 4k tokens").And.Contain("16 GiB", "…at 128k");
        output.Should().Contain("196,608", "24 GiB / 128 KiB per token").And.Contain("49,152", "MHA: 24 GiB / 512 KiB");
        output.Should().Contain("1/4");
    }

    [Fact]
    public void Kv_memory_reads_a_config_file()
    {
        var (code, output) = Run("kv-memory", "--config", Path.Combine(Fixtures.HfTiny("llama_gqa"), "config.json"), "--context", "100", "--dtype", "fp32", "--batch", "2");
        code.Should().Be(0, output);
        long gqa = KvCache.EstimateBytes(DecoderConfig.FromFile(Path.Combine(Fixtures.HfTiny("llama_gqa"), "config.json")), 2, 100, ScalarType.Float32);
        output.Should().Contain($"{gqa / 1024.0:0.##} KiB");
    }

    [Theory]
    [InlineData(new[] { "kv-memory", "--preset", "gpt-5" }, "Unknown preset 'gpt-5'")]
    [InlineData(new[] { "kv-memory", "--preset", "llama-3-8b", "--budget", "1KiB" }, "holds less than one token")]
    [InlineData(new[] { "kv-memory", "--preset", "llama-3-8b", "--budget", "lots" }, "'lots' is not a size")]
    [InlineData(new[] { "kv-memory" }, "exactly one of --config FILE or --preset NAME")]
    [InlineData(new[] { "verify", "--model", "/nonexistent/model", "--reference", "/nonexistent/ref.safetensors" }, "does not exist")]
    [InlineData(new[] { "generate", "--model", "/nonexistent/model", "--ids", "1,2" }, "does not exist")]
    [InlineData(new[] { "generate", "--model", "x", "--prompt", "hi" }, "--prompt needs --tokenizer")]
    [InlineData(new[] { "bench", "--kv-heads", "5" }, "must divide 32")]
    public void Errors_are_one_line_and_exit_2(string[] args, string message)
    {
        var (code, output) = Run(args);
        code.Should().Be(2, output);
        output.Should().Contain(message);
        output.Should().NotContain("   at ", "no stack trace without --verbose");
        output.Trim().Split('\n').Length.Should().BeLessThanOrEqualTo(2);
    }

    [Fact]
    public void Malformed_config_is_a_one_line_error_and_verbose_shows_the_trace()
    {
        using var directory = new Fixtures.TempDirectory();
        string config = Path.Combine(directory.Path, "config.json");
        File.WriteAllText(config, "{\"hidden_size\": 64,");
        var (code, output) = Run("kv-memory", "--config", config);
        code.Should().Be(2);
        output.Should().Contain("not valid JSON").And.NotContain("   at ");
        var (verboseCode, verbose) = Run("kv-memory", "--config", config, "--verbose");
        verboseCode.Should().Be(2);
        verbose.Should().Contain("InvalidDataException").And.Contain("JsonReaderException", "the inner cause and its frames");
        verbose.Trim().Split('\n').Length.Should().BeGreaterThan(3);
    }

    [Theory]
    [InlineData("hf-tiny", "llama_gqa")]
    [InlineData("hf-ref", "llama_padded")]
    public void Verify_passes_against_transformers_references(string set, string name)
    {
        string directory = Path.Combine(Fixtures.Root, set, name);
        var (code, output) = Run("verify", "--model", directory, "--reference", Path.Combine(directory, "expected.safetensors"));
        code.Should().Be(0, output);
        output.Should().Contain("PASS").And.Contain("match").And.MatchRegex(@"\d+/\d+ tokens equal");
    }

    [Fact]
    public void Verify_fails_with_exit_1_against_another_models_reference()
    {
        var (code, output) = Run("verify", "--model", Fixtures.HfTiny("llama_mha"), "--reference", Path.Combine(Fixtures.HfTiny("llama_gqa"), "expected.safetensors"));
        code.Should().Be(1, output);
        output.Should().Contain("FAIL").And.Contain("above 0.0001").And.Contain("differ");
    }

    [Fact]
    public void Generate_streams_the_same_tokens_as_the_library_and_reports_speed()
    {
        var (code, output) = Run("generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5,9,13", "--max-new", "6", "--dtype", "fp32");
        code.Should().Be(0, output);
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        var expected = new TokenGenerator(model).Generate([5, 9, 13], GenerationOptions.Greedy(6));
        output.Should().Contain(string.Join(",", expected));
        output.Should().Contain("decode tok/s").And.Contain("2 kv heads");
    }

    [Fact]
    public void Generate_takes_a_cache_dtype_other_than_the_models()
    {
        var (code, output) = Run("generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5,9,13", "--max-new", "6", "--dtype", "fp32", "--cache-dtype", "bf16");
        code.Should().Be(0, output);
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        using var cache = model.CreateCache(1, 8, ScalarType.BFloat16);
        var expected = new TokenGenerator(model).StreamBatch([[5, 9, 13]], GenerationOptions.Greedy(6), cache).Select(step => step[0]!.Value);
        output.Should().Contain(string.Join(",", expected)).And.Contain("kv heads, bf16");
        Run("generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5", "--cache-dtype", "int8").Output.Should().Contain("dtype 'int8' is not supported");
    }

    [Fact]
    public void Demo_runs_all_three_variants()
    {
        var (code, output) = Run("demo", "--context", "64", "--new-tokens", "4");
        code.Should().Be(0, output);
        output.Should().Contain("Llama-3-8B").And.Contain("512 MiB").And.Contain("Llama-3-70B").And.NotContain("Llama-2-70B");
        output.Should().Contain("MHA, 16 kv heads").And.Contain("GQA, 4 kv heads").And.Contain("MQA, 1 kv head").And.NotContain("1 kv heads");
        output.Should().Contain("decode tok/s").And.Contain("Medians of 3 rounds");
        output.IndexOf("KV cache per sequence", StringComparison.Ordinal).Should().BeLessThan(output.IndexOf("decode tok/s", StringComparison.Ordinal), "memory leads");
    }

    [Fact]
    public void Bench_runs_a_small_case()
    {
        var (code, output) = Run("bench", "--context", "64", "--kv-heads", "32,8", "--iterations", "2");
        code.Should().Be(0, output);
        output.Should().Contain("in place ms").And.Contain("K/V copied ms");
    }

    public static TheoryData<string> Commands => new(CliApp.CommandNames);

    [Theory]
    [MemberData(nameof(Commands))]
    public void Every_command_has_help(string command)
    {
        var (code, output) = Run(command, "--help");
        code.Should().Be(0, output);
        output.Should().Contain("USAGE").And.Contain("--verbose").And.Contain($"gqa {command}");
    }

    [Fact]
    public void Every_command_is_listed_by_the_help()
    {
        CliApp.CommandNames.Should().Contain(["chat", "tokenize", "template", "soak"]).And.OnlyHaveUniqueItems();
        var (code, output) = Run("--help");
        code.Should().Be(0, output);
        foreach (string command in CliApp.CommandNames) output.Should().Contain(command);
        output.Should().Contain("--version");
    }

    [Theory]
    [InlineData("generate", "--temprature", "--temperature")]
    [InlineData("generate", "--max-new-token", "--max-new-tokens")]
    [InlineData("kv-memory", "--contxt", "--context")]
    [InlineData("demo", "--new-token", "--new-tokens")]
    [InlineData("verify", "--refrence", "--reference")]
    [InlineData("bench", "--iteration", "--iterations")]
    public void Every_command_rejects_a_misspelled_option_with_a_hint(string command, string typo, string meant)
    {
        var (code, stdout, stderr) = RunSplit(240, command, typo, "1");
        code.Should().Be(2, stderr);
        stderr.Should().Contain($"unknown option '{typo}'").And.Contain($"Did you mean '{meant}'?");
        stdout.Should().BeEmpty("nothing ran");
    }

    [Theory]
    [InlineData("generate", "--bogus")]
    [InlineData("kv-memory", "--bogus")]
    [InlineData("demo", "--bogus")]
    [InlineData("verify", "--bogus")]
    [InlineData("bench", "--bogus")]
    [InlineData("kv-memory", "stray")]
    public void Every_command_rejects_what_it_does_not_know(string command, string what)
    {
        var (code, output) = Run(command, what);
        code.Should().Be(2, output);
        output.Should().Contain($"'{what}'").And.Contain(command);
    }

    [Fact]
    public void A_value_that_looks_like_an_option_is_still_a_value()
    {
        var (code, output) = Run("generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5,9", "--temperature", "-1");
        code.Should().Be(2, output);
        output.Should().Contain("--temperature must be 0 (greedy) or a positive finite number, but was -1.");
    }

    [Theory]
    [InlineData("--max-new-tokens", "0", "--max-new-tokens must be positive, but was 0.")]
    [InlineData("--top-p", "1.5", "--top-p must be in (0, 1], but was 1.5.")]
    [InlineData("--top-k", "-2", "--top-k must be 0 (off) or positive, but was -2.")]
    public void Errors_name_the_option_not_the_property(string option, string value, string message)
    {
        var (code, output) = Run("generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5", option, value);
        code.Should().Be(2, output);
        output.Should().Contain(message).And.NotContain("Parameter").And.NotContain("Actual value");
    }

    [Fact]
    public void Max_new_tokens_is_an_alias_of_max_new()
    {
        var (code, stdout, _) = RunSplit(240, "generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5,9,13", "--max-new-tokens", "5", "--quiet");
        code.Should().Be(0);
        stdout.Trim().Split(',').Should().HaveCount(5);
    }

    [Fact]
    public void Generate_writes_only_the_ids_to_standard_output()
    {
        var (code, stdout, stderr) = RunSplit(240, "generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5,9,13", "--max-new", "4");
        code.Should().Be(0, stderr);
        stdout.Trim().Should().MatchRegex(@"^\d+(,\d+){3}$");
        stderr.Should().Contain("decode tok/s");
        var (_, _, quiet) = RunSplit(240, "generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5,9,13", "--max-new", "4", "--quiet");
        quiet.Should().BeEmpty();
    }

    [Fact]
    public void Generate_stops_at_max_position_embeddings_and_says_so()
    {
        int maxPositions = DecoderConfig.FromFile(Path.Combine(Fixtures.HfTiny("llama_gqa"), "config.json")).MaxPositionEmbeddings;
        var (code, stdout, stderr) = RunSplit(240, "generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5,9,13", "--max-new-tokens", "100000");
        code.Should().Be(0, stderr);
        stdout.Trim().Split(',').Should().HaveCount(maxPositions - 3);
        stderr.Should().Contain("warning:").And.Contain($"max_position_embeddings ({maxPositions})");
    }

    [Fact]
    public void Kv_memory_takes_a_checkpoint_directory()
    {
        var (code, output) = Run("kv-memory", "--config", Fixtures.HfTiny("llama_gqa"), "--context", "100");
        code.Should().Be(0, output);
        output.Should().Contain("GQA 8/2 *");
    }

    [Fact]
    public void Version_names_the_tool_the_library_and_torchsharp()
    {
        var (code, output) = Run("--version");
        code.Should().Be(0);
        output.Should().MatchRegex(@"^gqa \d+\.\d+\.\d+.* \(GqaTransformer \d+\.\d+\.\d+.*, TorchSharp 0\.107\.\d+\)");
    }

    [Theory]
    [InlineData("kv-memory", "--preset", "llama-3-8b", "--budget", "24GiB")]
    [InlineData("kv-memory", "--preset", "llama-3-70b", "--context", "1k,4k,32k,128k,1024k", "--budget", "80GiB")]
    [InlineData("demo", "--context", "32", "--new-tokens", "2", "--rounds", "1")]
    [InlineData("bench", "--context", "64", "--kv-heads", "32,8", "--iterations", "1")]
    public void Output_fits_80_columns(params string[] args)
    {
        var (code, stdout, stderr) = RunSplit(80, args);
        code.Should().Be(0, stderr);
        foreach (var line in (stdout + stderr).Split('\n'))
            line.TrimEnd().Length.Should().BeLessThanOrEqualTo(80, line);
        (stdout + stderr).Should().NotContain("…", "no header is cut short");
    }

    [Fact]
    public void Convert_writes_a_gqa_checkpoint_that_loads()
    {
        using var directory = new Fixtures.TempDirectory();
        var (code, output) = Run("convert", "--model", Fixtures.HfTiny("llama_mha"), "--kv-heads", "2", "--out", directory.Path, "--method", "first");
        code.Should().Be(0, output);
        output.Should().Contain("8 query heads over 2 kv heads (first)");
        using var model = DecoderModel.FromPretrained(directory.Path);
        model.Config.NumKeyValueHeads.Should().Be(2);
        var (bad, message) = Run("convert", "--model", Fixtures.HfTiny("llama_mha"), "--kv-heads", "3", "--out", directory.Path);
        bad.Should().Be(2);
        message.Should().Contain("--kv-heads must divide the model's 8 key/value heads, but was 3.").And.NotContain("Parameter");
    }

    [Fact]
    public void Eval_prints_loss_perplexity_and_tokens_on_its_last_line()
    {
        using var directory = new Fixtures.TempDirectory();
        string text = Path.Combine(directory.Path, "text.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("The quick brown fox jumps over the lazy dog.\n", 20)));
        var (code, stdout, _) = RunSplit(240, "eval", "--model", Fixtures.HfTiny("llama_gqa"), "--data", text, "--seq", "16", "--max-tokens", "320");
        code.Should().Be(0);
        var last = stdout.Trim().Split('\n')[^1];
        last.Should().MatchRegex(@"^loss=\d+\.\d+ perplexity=\d+\.\d+ tokens=300$", "20 sequences of 16 predict 15 tokens each");
        double loss = double.Parse(last.Split(' ')[0]["loss=".Length..], System.Globalization.CultureInfo.InvariantCulture);
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        var expected = Evaluation.Evaluate(model, TextTokens.Pack(TextTokens.Read(text).Take(320), 16));
        loss.Should().BeApproximately(expected.Loss, 1e-5);
    }

    [Fact]
    public void Train_then_uptrain_learn_the_text_and_end_with_the_held_out_loss()
    {
        using var directory = new Fixtures.TempDirectory();
        string text = Path.Combine(directory.Path, "text.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 60).Select(i => $"The {i % 7} quick brown foxes jump over {i % 5} lazy dogs.\n")));
        string config = Path.Combine(Fixtures.HfTiny("llama_gqa"), "config.json");
        string trained = Path.Combine(directory.Path, "trained"), uptrained = Path.Combine(directory.Path, "uptrained");
        var (code, stdout, stderr) = RunSplit(240, "train", "--config", config, "--data", text, "--out", trained,
            "--steps", "40", "--batch", "4", "--seq", "32", "--lr", "3e-3", "--log-every", "20");
        code.Should().Be(0, stderr);
        stderr.Should().Contain("step 20/40").And.Contain("step 40/40");
        double Loss(string output) => double.Parse(output.Trim().Split('\n')[^1].Split(' ')[0]["loss=".Length..], System.Globalization.CultureInfo.InvariantCulture);
        double after = Loss(stdout);
        var heldOut = TextTokens.Pack(TextTokens.Read(text), 32).Where((_, i) => i % 20 == 19).ToList();
        manual_seed(0);
        using (var untrained = new DecoderModel(DecoderConfig.FromFile(config)))
            after.Should().BeLessThan(Evaluation.Evaluate(untrained, heldOut).Loss * 0.75, "40 steps learn a repetitive text");
        using (var model = DecoderModel.FromPretrained(trained))
            Evaluation.Evaluate(model, heldOut).Loss.Should().BeApproximately(after, 1e-5, "the checkpoint is the trained model");

        var (upCode, upOut, upErr) = RunSplit(240, "uptrain", "--model", trained, "--data", text, "--out", uptrained, "--steps", "5", "--batch", "4", "--seq", "32", "--lr", "1e-3");
        upCode.Should().Be(0, upErr);
        Loss(upOut).Should().BeLessThan(after * 1.05);
        File.Exists(Path.Combine(uptrained, "optimizer.bin")).Should().BeTrue();
        Run("train", "--preset", "llama-3-8b", "--config", config, "--data", text, "--out", trained).ExitCode.Should().Be(2);
        Run("train", "--config", config, "--data", text, "--out", trained, "--steps", "0").Output.Should().Contain("--steps must be positive");
        Run("train", "--config", config, "--data", text, "--out", trained, "--precision", "bf16").Output.Should().Contain("--precision bf16 needs --device cuda");
        Run("train", "--config", config, "--data", text, "--out", trained, "--precision", "fp8").Output.Should().Contain("--precision must be fp32 or bf16");
    }

    [Fact]
    public void Tokenize_prints_the_ids_as_one_json_array()
    {
        using var directory = new Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(directory.Path, "tokenizer.json"), """
            {"added_tokens": [{"id": 3, "content": "<s>", "special": true}],
             "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                                "special_tokens": {"<s>": {"id": "<s>", "ids": [3], "tokens": ["<s>"]}}},
             "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}
            """);
        var (code, stdout, stderr) = RunSplit(60, "tokenize", "--model", directory.Path, "--", "abab<s>a");
        code.Should().Be(0, stderr);
        stdout.Trim().Should().Be("[3,2,2,3,0]");
        RunSplit(60, "tokenize", "--model", directory.Path, "--no-special-tokens", "--", "ab").Stdout.Trim().Should().Be("[2]");
        Run("tokenize", "--model", directory.Path).Output.Should().Contain("Give the text after --");
        Run("tokenize", "--model", directory.Path, "--special", "--", "ab").ExitCode.Should().Be(2);
    }

    [Fact]
    public void Template_writes_the_rendered_prompt_exactly_and_a_raising_template_exits_1()
    {
        using var fixture = new ChatFixture();
        string messages = Path.Combine(fixture.Path, "messages.json");
        File.WriteAllText(messages, """[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "héllo\n  there"}]""");
        var (code, stdout, stderr) = RunSplit(40, "template", "--model", fixture.Path, "--messages", messages, "--add-generation-prompt");
        code.Should().Be(0, stderr);
        stdout.Should().Be(ChatTemplate.Parse(ChatFixture.Template).Render([("system", "Be brief."), ("user", "héllo\n  there")], addGenerationPrompt: true),
            "exactly the render: no wrapping at the console's width, no newline added");
        RunSplit(40, "template", "--model", fixture.Path, "--messages", messages).Stdout.Should().NotEndWith("assistant\n");

        using var raising = new ChatFixture("{{ raise_exception('Only user turns, please.') }}");
        var (raisedCode, _, raisedErr) = RunSplit(80, "template", "--model", raising.Path, "--messages", messages);
        raisedCode.Should().Be(1);
        raisedErr.Should().Contain("Only user turns, please.");
        Run("template", "--model", fixture.Path, "--messages", Path.Combine(fixture.Path, "missing.json")).Output.Should().Contain("does not exist");
    }

    [Fact]
    public void Generate_and_verify_take_a_device_map()
    {
        string model = Fixtures.HfTiny("llama_gqa");
        var (plainCode, plain, _) = RunSplit(240, "generate", "--model", model, "--ids", "5,9,13", "--max-new", "6", "--quiet");
        var (mappedCode, mapped, _) = RunSplit(240, "generate", "--model", model, "--ids", "5,9,13", "--max-new", "6", "--quiet", "--device-map", "cpu=1,cpu=1");
        plainCode.Should().Be(0);
        mappedCode.Should().Be(0);
        mapped.Should().Be(plain);
        var (code, output) = Run("verify", "--model", model, "--reference", Path.Combine(model, "expected.safetensors"), "--device-map", "cpu=1,cpu=1");
        code.Should().Be(0, output);
        output.Should().Contain("PASS");
        Run("verify", "--model", model, "--reference", Path.Combine(model, "expected.safetensors"), "--device-map", "cpu=3").Output.Should().Contain("places 3 layers, but the model has 2");
        Run("generate", "--model", model, "--ids", "5", "--device", "cuda", "--device-map", "cpu=2").Output.Should().Contain("Give --device or --device-map, not both.");
    }

    [Fact]
    public void Generate_takes_frequency_and_presence_penalties_in_range()
    {
        string model = Fixtures.HfTiny("llama_gqa");
        var (_, plain, _) = RunSplit(240, "generate", "--model", model, "--ids", "5,9,13", "--max-new", "12", "--quiet");
        var (code, penalised, _) = RunSplit(240, "generate", "--model", model, "--ids", "5,9,13", "--max-new", "12", "--quiet", "--frequency-penalty", "1.5");
        code.Should().Be(0);
        penalised.Should().NotBe(plain);
        Run("generate", "--model", model, "--ids", "5", "--presence-penalty", "3").Output.Should().Contain("--presence-penalty must be in [-2, 2], but was 3.");
    }

    [Fact]
    public void Bench_devices_needs_the_model_and_as_many_gpus()
    {
        Run("bench", "--devices", "2").Output.Should().Contain("--devices needs --model.");
        Run("bench", "--devices", "0", "--model").Output.Should().Contain("--devices must be positive, but was 0.");
        if (!TorchSharp.torch.cuda.is_available())
            Run("bench", "--model", "--devices", "2", "--context", "8", "--new-tokens", "4", "--kv-heads", "8").Output
                .Should().Contain("--devices 2 needs 2 CUDA devices, but TorchSharp finds 0.");
    }
}
