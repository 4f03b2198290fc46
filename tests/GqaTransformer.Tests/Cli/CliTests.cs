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
    private static (int ExitCode, string Output) Run(params string[] args)
    {
        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = 240;
        int code = CliApp.Run(args, console);
        return (code, writer.ToString());
    }

    [Fact]
    public void Kv_memory_prints_the_table_and_the_longest_context_in_a_budget()
    {
        var (code, output) = Run("kv-memory", "--preset", "llama-3-8b", "--context", "4k,128k", "--budget", "24GiB");
        code.Should().Be(0, output);
        output.Should().Contain("GQA, 8 kv heads (this model)").And.Contain("MHA, 32 kv heads").And.Contain("MQA, 1 kv heads");
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
        var (code, output) = Run("generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5,9,13", "--max-new", "6");
        code.Should().Be(0, output);
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        var expected = new TokenGenerator(model).Generate([5, 9, 13], GenerationOptions.Greedy(6));
        output.Should().Contain(string.Join(",", expected));
        output.Should().Contain("decode tok/s").And.Contain("kv heads");
    }

    [Fact]
    public void Generate_takes_a_cache_dtype_other_than_the_models()
    {
        var (code, output) = Run("generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5,9,13", "--max-new", "6", "--cache-dtype", "bf16");
        code.Should().Be(0, output);
        using var model = DecoderModel.FromPretrained(Fixtures.HfTiny("llama_gqa"));
        using var cache = model.CreateCache(1, 8, ScalarType.BFloat16);
        var expected = new TokenGenerator(model).StreamBatch([[5, 9, 13]], GenerationOptions.Greedy(6), default, cache).Select(step => step[0]!.Value);
        output.Should().Contain(string.Join(",", expected)).And.Contain("kv heads, bf16");
        Run("generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5", "--cache-dtype", "int8").Output.Should().Contain("dtype 'int8' is not supported");
    }

    [Fact]
    public void Demo_runs_all_three_variants()
    {
        var (code, output) = Run("demo", "--context", "64", "--new-tokens", "4");
        code.Should().Be(0, output);
        output.Should().Contain("Llama-3-8B").And.Contain("512 MiB").And.Contain("MHA (16 kv heads)").And.Contain("GQA (4 kv heads)").And.Contain("MQA (1 kv heads)");
        output.Should().Contain("decode tok/s");
    }

    [Fact]
    public void Bench_runs_a_small_case()
    {
        var (code, output) = Run("bench", "--context", "64", "--kv-heads", "32,8", "--iterations", "2");
        code.Should().Be(0, output);
        output.Should().Contain("in place ms").And.Contain("K/V copied ms");
    }

    [Theory]
    [InlineData("demo")]
    [InlineData("kv-memory")]
    [InlineData("generate")]
    [InlineData("verify")]
    [InlineData("bench")]
    public void Every_command_has_help(string command)
    {
        var (code, output) = Run(command, "--help");
        code.Should().Be(0);
        output.Should().Contain("USAGE").And.Contain("--verbose");
    }
}
