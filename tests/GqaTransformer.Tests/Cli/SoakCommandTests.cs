using FluentAssertions;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary><c>gqa soak</c> reads process-wide counts (live tensors, resident memory), so it runs with no other test.</summary>
[Collection(nameof(ThreadHostileTests))]
public class SoakCommandTests
{
    [Fact]
    public void Soak_loads_generates_and_disposes_and_reports_that_memory_held()
    {
        var (code, output) = CliTests.Run("soak", "--model", Fixtures.HfTiny("llama_gqa"), "--cycles", "4", "--max-new", "8");
        code.Should().Be(0, output);
        output.Should().Contain("cycles=4").And.Contain("tokens_per_cycle=8").And.Contain("parameters=21")
            .And.Contain("live_tensors_growth=").And.EndWith("result=held" + Environment.NewLine);
    }

    [Fact]
    public void Soak_rejects_what_it_does_not_understand()
    {
        CliTests.Run("soak", "--model", Fixtures.HfTiny("llama_gqa"), "--cycles", "1").Output.Should().Contain("--cycles must be from 2 to 100000, but was 1.");
        CliTests.Run("soak", "--model", Fixtures.HfTiny("llama_gqa"), "--cuda-graphs", "maybe").Output.Should().Contain("--cuda-graphs must be on or off");
        CliTests.Run("soak", "--cycles", "3").Output.Should().Contain("--model DIR is required.");
        CliTests.Run("soak", "--model", Fixtures.HfTiny("llama_gqa"), "--ids", "1,x").Output.Should().Contain("--ids");
    }
}
