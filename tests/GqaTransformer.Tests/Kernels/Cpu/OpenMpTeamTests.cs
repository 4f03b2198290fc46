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

    [Fact]
    public void The_team_is_the_libgomp_beside_libtorch_cpu()
    {
        if (!OperatingSystem.IsLinux()) return; // /proc/self/maps; IsAvailable is false elsewhere (tested above)
        OpenMpTeam.IsAvailable.Should().BeTrue();
        string torch = File.ReadLines("/proc/self/maps").Select(line => line[(line.IndexOf('/') is var i and >= 0 ? i : line.Length)..])
            .First(file => Path.GetFileName(file).StartsWith("libtorch_cpu.so", StringComparison.Ordinal));
        Path.GetDirectoryName(OpenMpTeam.LibraryPath).Should().Be(Path.GetDirectoryName(torch));
        Path.GetFileName(OpenMpTeam.LibraryPath).Should().StartWith("libgomp");
    }

    [Fact]
    public void Another_runtime_mapped_first_is_not_taken_for_libtorchs()
    {
        // llama.cpp's ggml links the system libgomp; /proc/self/maps lists files by address, so it can come first.
        string[] mapped =
        [
            "/usr/lib/x86_64-linux-gnu/libgomp.so.1",
            "/app/runtimes/linux-x64/native/libgomp-98b21ff3.so.1",
            "/app/runtimes/linux-x64/native/libtorch_cpu.so",
            "/app/runtimes/linux-x64/native/libtorch_cpu.so",
        ];
        OpenMpTeam.ChooseLibgomp(mapped).Should().Be("/app/runtimes/linux-x64/native/libgomp-98b21ff3.so.1");
    }

    [Fact]
    public void The_only_libgomp_is_taken_wherever_it_lives_but_two_elsewhere_are_ambiguous()
    {
        string torch = "/venv/torch/lib/libtorch_cpu.so";
        OpenMpTeam.ChooseLibgomp([torch, "/venv/torch.libs/libgomp-a34b3233.so.1"]).Should().Be("/venv/torch.libs/libgomp-a34b3233.so.1");
        OpenMpTeam.ChooseLibgomp([torch, "/venv/torch.libs/libgomp-a34b3233.so.1", "/usr/lib/libgomp.so.1"]).Should().BeNull();
        OpenMpTeam.ChooseLibgomp(["/usr/lib/libgomp.so.1"]).Should().BeNull("libtorch is not loaded");
    }

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
