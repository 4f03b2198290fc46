using FluentAssertions;
using GqaTransformer.Cli;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>What a new user meets first: help, typos, a file for a directory, bad ids, the default dtype.</summary>
public class UsabilityTests
{
    [Fact]
    public void Help_shows_brackets_in_descriptions_as_written()
    {
        var (code, output) = CliTests.Run("template", "--help");
        code.Should().Be(0, output);
        output.Should().Contain("{\"messages\": [...], \"tools\":").And.NotContain("[[");
    }

    [Theory]
    [InlineData("genrate", "generate")]
    [InlineData("tokenise", "tokenize")]
    [InlineData("kv-mem", "kv-memory")]
    public void A_mistyped_command_gets_the_nearest_one(string typo, string meant)
    {
        var (code, stdout, stderr) = CliTests.RunSplit(240, typo, "--model", "x");
        code.Should().Be(CliApp.BadInput);
        stdout.Should().BeEmpty();
        stderr.Should().Be($"error: unknown command '{typo}'. Did you mean '{meant}'?" + Environment.NewLine);
    }

    [Fact]
    public void An_unknown_command_far_from_any_lists_them()
    {
        var (code, _, stderr) = CliTests.RunSplit(240, "frobnicate");
        code.Should().Be(CliApp.BadInput);
        stderr.Should().Contain("unknown command 'frobnicate'. Commands: demo, kv-memory, generate,").And.NotContain("Did you mean");
    }

    [Theory]
    [InlineData("generate", "--ids", "1")]
    [InlineData("verify", "--reference", "ref.safetensors")]
    [InlineData("eval", "--data", "text.txt")]
    [InlineData("soak")]
    [InlineData("chat")]
    [InlineData("convert", "--kv-heads", "1", "--out", "out")]
    [InlineData("uptrain", "--data", "text.txt", "--out", "out")]
    public void A_file_given_for_the_model_directory_is_called_a_file(string command, params string[] rest)
    {
        using var directory = new Fixtures.TempDirectory();
        string readme = Path.Combine(directory.Path, "README.md");
        File.WriteAllText(readme, "# a model card\n");
        var (code, _, stderr) = CliTests.RunSplit(240, [command, "--model", readme, .. rest]);
        code.Should().Be(CliApp.BadInput, stderr);
        stderr.Should().Contain($"--model: '{readme}' is a file; a model directory (with ").And.Contain("was expected.").And.NotContain("does not exist");
    }

    [Fact]
    public void A_template_model_that_is_a_file_is_called_a_file()
    {
        using var fixture = new ChatFixture();
        string config = Path.Combine(fixture.Path, "config.json");
        var (code, _, stderr) = CliTests.RunSplit(240, "template", "--model", config, "--messages", config);
        code.Should().Be(CliApp.BadInput);
        stderr.Should().Contain($"'{config}' is a file; a model directory (with chat_template.jinja or tokenizer_config.json) was expected.");
    }

    [Theory]
    [InlineData("-1,2,3", "'-1' is not a token id; ids must be non-negative integers below the model's vocabulary size")]
    [InlineData("1,x", "'x' is not a token id")]
    [InlineData("5,256", "token id 256 is outside the model's vocabulary; ids must be non-negative and below its size, 256.")]
    public void Bad_ids_are_named_with_what_ids_must_be(string ids, string message)
    {
        foreach (var command in new[] { "generate", "soak" })
        {
            var (code, stdout, stderr) = CliTests.RunSplit(240, command, "--model", Fixtures.HfTiny("llama_gqa"), "--ids", ids);
            code.Should().Be(CliApp.BadInput, stderr);
            stdout.Should().BeEmpty();
            stderr.Should().Contain("--ids: ").And.Contain(message).And.NotContain("4k", "ids are not context lengths");
        }
    }

    [Fact]
    public void Generate_defaults_to_bf16_and_takes_fp32()
    {
        string model = Fixtures.HfTiny("llama_gqa");
        var (code, _, stderr) = CliTests.RunSplit(240, "generate", "--model", model, "--ids", "5,9,13", "--max-new", "4");
        code.Should().Be(0, stderr);
        stderr.Should().Contain("KV cache: 2 kv heads, bf16.", "the cache takes the model's dtype, bf16 by default");
        var (fp32Code, _, fp32) = CliTests.RunSplit(240, "generate", "--model", model, "--ids", "5,9,13", "--max-new", "4", "--dtype", "fp32");
        fp32Code.Should().Be(0, fp32);
        fp32.Should().Contain("KV cache: 2 kv heads, fp32.");
    }

    [Fact]
    public void Verbose_after_the_double_dash_is_text()
    {
        using var directory = new Fixtures.TempDirectory();
        var (code, _, stderr) = CliTests.RunSplit(240, "tokenize", "--model", Path.Combine(directory.Path, "missing.json"), "--", "--verbose");
        code.Should().Be(CliApp.BadInput);
        stderr.Should().StartWith("error: ").And.Contain("missing.json");
        stderr.Trim().Should().NotContain("\n", "--verbose is part of the text here, not the option that prints the stack trace");
    }
}
