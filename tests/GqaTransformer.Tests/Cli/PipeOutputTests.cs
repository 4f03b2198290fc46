using FluentAssertions;
using GqaTransformer;
using GqaTransformer.Cli;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// What scripts read goes out unwrapped through a pipe: consoles 80 columns wide that are not terminals, as Spectre sees
/// standard output and error under <c>| next-step</c>, and outputs longer than 80 characters.
/// </summary>
public class PipeOutputTests
{
    private const int PipeWidth = 80;

    /// <summary>A tokenizer.json whose post-processor puts BOS (id 3) first; "ab" is id 1002.</summary>
    private const string BosTokenizer = """
        {"added_tokens": [{"id": 3, "content": "<s>", "special": true}],
         "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                            "special_tokens": {"<s>": {"id": "<s>", "ids": [3], "tokens": ["<s>"]}}},
         "model": {"type": "BPE", "vocab": {"a": 1000, "b": 1001, "ab": 1002}, "merges": ["a b"]}}
        """;

    private static string ChatTokenizer => Path.Combine(Fixtures.Root, "chat-tiny", "tokenizer.json");

    [Fact]
    public void Tokenize_prints_a_long_id_list_on_one_line()
    {
        string text = "The quick brown fox jumps over the lazy dog, twice: the quick brown fox jumps over the lazy dog.";
        var expected = HfTokenizer.FromFile(ChatTokenizer).Encode(text);
        expected.Count.Should().BeGreaterThan(40);
        var (code, stdout, stderr) = CliTests.RunSplit(PipeWidth, "tokenize", "--model", ChatTokenizer, "--", text);
        code.Should().Be(0, stderr);
        stdout.Should().Be("[" + string.Join(",", expected) + "]" + Environment.NewLine);
    }

    [Fact]
    public void Tokenize_reads_standard_input_without_its_final_line_break()
    {
        using var directory = new Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(directory.Path, "tokenizer.json"), BosTokenizer);
        string line = string.Concat(Enumerable.Repeat("ab", 40));
        var expected = "[3," + string.Join(",", Enumerable.Repeat(1002, 40)) + "]" + Environment.NewLine;
        foreach (string piped in new[] { line + "\n", line + "\r\n", line })
        {
            var (code, stdout, stderr) = CliTests.RunSplit(PipeWidth, new StandardInput(new StringReader(piped), IsTerminal: false), "tokenize", "--model", directory.Path);
            code.Should().Be(0, stderr);
            stdout.Should().Be(expected, "echo's line break is not part of the text");
        }
        var terminal = new StandardInput(new StringReader("never read"), IsTerminal: true);
        var (waited, _, message) = CliTests.RunSplit(PipeWidth, terminal, "tokenize", "--model", directory.Path);
        waited.Should().Be(CliApp.BadInput);
        message.Should().Contain("Give the text after --").And.Contain("or on standard input");
    }

    [Fact]
    public void Tokenize_of_the_empty_text_gives_what_the_tokenizer_adds()
    {
        using var directory = new Fixtures.TempDirectory();
        string file = Path.Combine(directory.Path, "tokenizer.json");
        File.WriteAllText(file, BosTokenizer);
        var expected = HfTokenizer.FromFile(file).Encode("");
        expected.Should().Equal([3], "the post-processor's BOS alone, as transformers gives");
        var terminal = new StandardInput(new StringReader(""), IsTerminal: true);
        var (code, stdout, stderr) = CliTests.RunSplit(PipeWidth, terminal, "tokenize", "--model", directory.Path, "--", "");
        code.Should().Be(0, stderr);
        stdout.Should().Be("[3]" + Environment.NewLine);
        CliTests.RunSplit(PipeWidth, terminal, "tokenize", "--model", directory.Path, "--no-special-tokens", "--", "").Stdout
            .Should().Be("[]" + Environment.NewLine);
    }

    [Fact]
    public void Generate_prints_a_long_id_list_on_one_line()
    {
        var (code, stdout, stderr) = CliTests.RunSplit(PipeWidth, "generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5,9,13", "--max-new", "40", "--quiet");
        code.Should().Be(0, stderr);
        stdout.Should().MatchRegex(@"^\d+(,\d+){39}\r?\n$");
        stdout.Length.Should().BeGreaterThan(PipeWidth);
    }

    [Fact]
    public void Warnings_and_errors_are_one_line_whatever_their_length()
    {
        var (code, _, stderr) = CliTests.RunSplit(PipeWidth, "generate", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "5,9,13", "--max-new-tokens", "100000");
        code.Should().Be(0, stderr);
        stderr.Should().Contain("warning: 3 prompt tokens + --max-new-tokens 100000 pass the model's max_position_embeddings (512); stopping after 509 new tokens."
                                + Environment.NewLine);

        string missing = "/nonexistent/" + string.Concat(Enumerable.Repeat("a-rather-long-folder-name/", 4)) + "model";
        var (bad, stdout, error) = CliTests.RunSplit(PipeWidth, "generate", "--model", missing, "--ids", "1,2");
        bad.Should().Be(CliApp.BadInput);
        stdout.Should().BeEmpty();
        error.Should().StartWith($"error: --model: directory '{missing}' does not exist;").And.EndWith("was expected." + Environment.NewLine);
        error.Trim().Should().NotContain("\n");
        error.Length.Should().BeGreaterThan(PipeWidth);

        var (typo, _, hint) = CliTests.RunSplit(PipeWidth, "generate", "--model", missing, "--ids", "1", "--a-very-long-misspelled-option-name-indeed");
        typo.Should().Be(CliApp.BadInput);
        hint.Trim().Should().NotContain("\n").And.Contain("unknown option '--a-very-long-misspelled-option-name-indeed' for 'gqa generate'.");
    }

    [Fact]
    public void Convert_names_a_long_output_directory_on_one_line()
    {
        using var directory = new Fixtures.TempDirectory();
        string output = Path.Combine(directory.Path, string.Concat(Enumerable.Repeat("converted-to-grouped-query-attention-", 3)));
        var (code, stdout, stderr) = CliTests.RunSplit(PipeWidth, "convert", "--model", Fixtures.HfTiny("llama_mha"), "--kv-heads", "2", "--out", output, "--method", "first");
        code.Should().Be(0, stderr);
        stdout.Should().StartWith($"wrote {output}: 8 query heads over 2 kv heads (first), in ").And.EndWith(" s" + Environment.NewLine);
        stdout.Trim().Should().NotContain("\n");
    }

    [Fact]
    public void Template_raising_writes_its_long_message_on_one_line()
    {
        string raised = "Only user turns, please; " + string.Concat(Enumerable.Repeat("this message goes on and on, ", 4)) + "and ends here.";
        using var raising = new ChatFixture($"{{{{ raise_exception('{raised}') }}}}");
        string messages = Path.Combine(raising.Path, "messages.json");
        File.WriteAllText(messages, """[{"role": "user", "content": "hi"}]""");
        var (code, stdout, stderr) = CliTests.RunSplit(PipeWidth, "template", "--model", raising.Path, "--messages", messages);
        code.Should().Be(1);
        stdout.Should().BeEmpty();
        stderr.Should().Contain(raised + Environment.NewLine);
    }
}
