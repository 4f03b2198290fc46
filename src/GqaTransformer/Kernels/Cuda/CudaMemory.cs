using TorchSharp;

namespace GqaTransformer;

/// <summary>What libtorch's CUDA caching allocator holds on one device, and what the driver has left, in bytes.</summary>
/// <param name="AllocatedBytes">Bytes held by live tensors (<c>torch.cuda.memory_allocated</c>).</param>
/// <param name="ReservedBytes">Bytes the allocator has taken from the driver, in use or cached (<c>torch.cuda.memory_reserved</c>).</param>
/// <param name="FreeBytes">Bytes the driver has free on the device, for every process (<c>torch.cuda.mem_get_info()[0]</c>).</param>
/// <param name="TotalBytes">The device's memory (<c>torch.cuda.mem_get_info()[1]</c>).</param>
public readonly record struct CudaMemoryStats(long AllocatedBytes, long ReservedBytes, long FreeBytes, long TotalBytes);

/// <summary>
/// The CUDA memory counters TorchSharp 0.107 does not bind (<c>torch.cuda.memory_allocated</c>, <c>memory_reserved</c>,
/// <c>empty_cache</c>), read through the native shim of <see cref="CudaGraphs"/>: with them a program can check that
/// disposing a model and its cache gives the device memory back (docs/reliability.md).
/// </summary>
public static unsafe class CudaMemory
{
    /// <summary>Why the counters cannot be read here, or null when they can (CUDA, and the shim loaded with them).</summary>
    public static string? UnavailableReason
        => CudaGraphs.FeatureUnavailableReason(
            library => library.Memory != null && library.EmptyCache != null && library.MemGetInfo != null, "memory counters");

    /// <summary>Whether <see cref="GetStats"/> and <see cref="EmptyCache"/> work in this process.</summary>
    public static bool IsAvailable => UnavailableReason is null;

    /// <summary>The allocator's counters for CUDA device <paramref name="device"/>, after waiting for its queued work.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="device"/> is not a CUDA device of this process.</exception>
    /// <exception cref="InvalidOperationException">The counters are unavailable (<see cref="UnavailableReason"/> says why).</exception>
    public static CudaMemoryStats GetStats(int device = 0)
    {
        var library = Library();
        int count = torch.cuda.device_count();
        if (device < 0 || device >= count)
            throw new ArgumentOutOfRangeException(nameof(device), device, $"Expected a CUDA device index from 0 to {count - 1}.");
        var cudaDevice = new torch.Device(DeviceType.CUDA, device);
        // libtorch sets its allocator up at the first CUDA tensor and refuses to report before; an empty one allocates nothing.
        using (torch.empty(0, device: cudaDevice)) { }
        torch.cuda.synchronize(cudaDevice);
        long allocated, reserved, free, total;
        if (library.Memory(device, &allocated, &reserved) != 0 || library.MemGetInfo(device, &free, &total) != 0)
            throw new InvalidOperationException($"Reading CUDA memory counters failed: {library.LastError}.");
        return new CudaMemoryStats(allocated, reserved, free, total);
    }

    /// <summary>Gives the allocator's cached, unused blocks back to the driver (<c>torch.cuda.empty_cache</c>).</summary>
    /// <exception cref="InvalidOperationException">The counters are unavailable (<see cref="UnavailableReason"/> says why).</exception>
    public static void EmptyCache()
    {
        var library = Library();
        if (library.EmptyCache() != 0)
            throw new InvalidOperationException($"Emptying the CUDA cache failed: {library.LastError}.");
    }

    private static CudaGraphLibrary Library()
        => UnavailableReason is { } reason ? throw new InvalidOperationException($"CUDA memory counters are unavailable: {reason}.") : CudaGraphs.Library!;
}
