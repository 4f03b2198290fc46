using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

public class OpenMpTeamTests
{
    [Fact]
    public void Runs_on_libtorchs_openmp_team_on_linux()
        => OpenMpTeam.IsAvailable.Should().Be(OperatingSystem.IsLinux(), "libtorch-cpu for Linux ships libgomp");

    [Theory]
    [InlineData(1, 2)]
    [InlineData(7, 2)]
    [InlineData(1000, 2)]
    [InlineData(1000, 1)]
    public void Every_index_runs_exactly_once(int count, int threads)
    {
        var hits = new int[count];
        OpenMpTeam.For(count, threads, i => Interlocked.Increment(ref hits[i]));
        hits.Should().OnlyContain(h => h == 1);
    }

    [Fact]
    public void Loops_started_from_several_threads_at_once_each_complete()
    {
        // libgomp gives every calling thread its own team; the loops must not share or lose indices.
        var totals = new long[4];
        Parallel.For(0, 4, caller =>
        {
            for (int round = 0; round < 20; round++)
                OpenMpTeam.For(64, Math.Max(2, get_num_threads()), i => Interlocked.Add(ref totals[caller], i));
        });
        totals.Should().OnlyContain(t => t == 20L * 64 * 63 / 2);
    }

    [Fact]
    public void An_exception_in_the_body_reaches_the_caller_and_the_team_stays_usable()
    {
        var run = () => OpenMpTeam.For(100, 2, i => { if (i == 37) throw new InvalidOperationException("index 37"); });
        run.Should().Throw<AggregateException>().WithInnerException<InvalidOperationException>().WithMessage("index 37");
        var hits = new int[10];
        OpenMpTeam.For(10, 2, i => hits[i]++);
        hits.Should().OnlyContain(h => h == 1);
    }
}
