using FluentAssertions;
using GqaTransformer;
using GqaTransformer.Cli;
using Microsoft.Extensions.AI;
using Spectre.Console;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary><c>gqa chat</c> reading turns from standard input (replaced here, so it runs alone).</summary>
[Collection(nameof(ThreadHostileTests))]
public class ChatCommandTests
{
    [Fact]
    public async Task Chat_streams_replies_keeps_the_history_and_obeys_its_commands()
    {
        using var fixture = new ChatFixture();
        var input = System.Console.In;
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        int code;
        try
        {
            System.Console.SetIn(new StringReader("hello there\n/bogus\nand then?\n/system Be brief.\nhi\n/exit\nnever read\n"));
            code = CliApp.Run(["chat", "--model", fixture.Path, "--max-new", "6"], Writer(stdout), Writer(stderr));
        }
        finally
        {
            System.Console.SetIn(input);
        }
        code.Should().Be(0, stderr.ToString());
        var replies = stdout.ToString().Split('\n')[..^1];
        replies.Should().HaveCount(3, "three user turns before /exit");

        // The same three turns through the client: the second turn carries the first's history, the third starts over.
        using var client = GqaChatClient.FromPretrained(fixture.Path);
        var options = new ChatOptions { MaxOutputTokens = 6 };
        var history = new List<ChatMessage> { new(ChatRole.User, "hello there") };
        string first = (await client.GetResponseAsync(history, options)).Text;
        history.AddRange([new ChatMessage(ChatRole.Assistant, first), new ChatMessage(ChatRole.User, "and then?")]);
        string second = (await client.GetResponseAsync(history, options)).Text;
        string third = (await client.GetResponseAsync([new ChatMessage(ChatRole.System, "Be brief."), new ChatMessage(ChatRole.User, "hi")], options)).Text;
        replies.Should().Equal(first, second, third);
        stderr.ToString().Should().Contain("Unknown command /bogus").And.Contain("tok/s").And.Contain("from the cache");
    }

    private static IAnsiConsole Writer(StringWriter writer) => AnsiConsole.Create(new AnsiConsoleSettings
    {
        Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Out = new AnsiConsoleOutput(writer), Interactive = InteractionSupport.No,
    });
}
