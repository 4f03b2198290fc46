using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>The CUDA allocator's counters read through the native shim: refused with the reason where they cannot be read.</summary>
public class CudaMemoryTests
{
    [SkippableFact]
    public void Without_cuda_the_counters_are_refused_with_the_reason()
    {
        Skip.If(cuda.is_available(), "this machine has CUDA");
        CudaMemory.IsAvailable.Should().BeFalse();
        CudaMemory.UnavailableReason.Should().Contain("CUDA");
        var read = () => CudaMemory.GetStats();
        read.Should().Throw<InvalidOperationException>().WithMessage("CUDA memory counters are unavailable: *CUDA*");
        var empty = () => CudaMemory.EmptyCache();
        empty.Should().Throw<InvalidOperationException>();
    }

    [SkippableFact]
    public void A_tensor_on_the_device_shows_in_the_allocated_bytes_until_it_is_disposed()
    {
        Skip.IfNot(cuda.is_available() && CudaMemory.IsAvailable, "needs CUDA and the native shim");
        var before = CudaMemory.GetStats();
        var tensor = zeros(1 << 20, device: CUDA);   // 4 MiB
        CudaMemory.GetStats().AllocatedBytes.Should().Be(before.AllocatedBytes + (4L << 20));
        tensor.Dispose();
        CudaMemory.GetStats().AllocatedBytes.Should().Be(before.AllocatedBytes);
        var bad = () => CudaMemory.GetStats(cuda.device_count());
        bad.Should().Throw<ArgumentOutOfRangeException>().WithParameterName("device");
    }
}
