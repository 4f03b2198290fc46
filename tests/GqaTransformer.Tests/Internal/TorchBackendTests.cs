using FluentAssertions;
using GqaTransformer;
using Xunit;

namespace GqaTransformer.Tests;

/// <summary>
/// The words a user gets when TorchSharp's backend does not load. The real failures need another process (a missing
/// package, an unpatched libLibTorchSharp.so); .ci/run makes both and checks the message. Here: the classification, on
/// the texts TorchSharp and the loader really print.
/// </summary>
public class TorchBackendTests
{
    private const string TorchSharpText = "This application or script uses TorchSharp but doesn't contain a reference to libtorch-cpu-linux-x64, Version=2.10.0.0.";

    [Fact]
    public void An_old_libstdcxx_is_named_as_the_cause_not_a_missing_package()
    {
        string loader = "/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by /app/runtimes/linux-x64/native/libLibTorchSharp.so)";
        string message = TorchBackend.Explain(TorchSharpText, loader);
        message.Should().Contain("GLIBCXX_3.4.32").And.Contain("GqaTransformerPatchGlibcxx").And.Contain(loader).And.NotContain("dotnet add package");
    }

    [Fact]
    public void A_missing_backend_package_is_named_with_the_command_that_adds_one()
    {
        string loader = "libtorch_cpu.so: cannot open shared object file: No such file or directory";
        TorchBackend.Explain(TorchSharpText, loader).Should().Contain("dotnet add package libtorch-cpu-linux-x64 --version 2.10.0").And.Contain("LD_LIBRARY_PATH");
        TorchBackend.Explain(TorchSharpText, "libLibTorchSharp.so is not next to the application.").Should().Contain("No backend package");
    }

    [Fact]
    public void Anything_else_keeps_torchsharps_words()
        => TorchBackend.Explain("TorchSharp only supports 64-bit processes.", null).Should().EndWith("TorchSharp only supports 64-bit processes.");

    [Fact]
    public void The_backend_loads_here()
        => FluentActions.Invoking(TorchBackend.EnsureLoaded).Should().NotThrow();
}
