using System.Runtime.InteropServices;
using TorchSharp;

namespace GqaTransformer.Tests;

/// <summary>
/// What a long run could leak, read apart: native heap bytes in use (glibc's <c>mallinfo2</c>: blocks handed out and
/// not freed, whether or not their pages are resident), the managed heap after a full collection, and tensors this
/// thread made and nothing disposed. Resident memory is not among them: in a test process that has run hundreds of
/// tests, glibc's per-thread arenas keep freed tops of up to its trim threshold (64 MiB each) resident, which
/// <c>malloc_trim</c> does not reach, so it moves by tens of MB with no leak (ADR 0019). Resident memory is checked in a
/// process of its own, by <c>gqa soak</c>.
/// </summary>
internal readonly record struct ProcessMemory(long NativeInUse, long ManagedHeap, long LiveTensors)
{
    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    [DllImport("libc.so.6", EntryPoint = "mallinfo2")]
    private static extern MallInfo2 Mallinfo2();

    /// <summary>Whether this process's C library reports its heap (glibc 2.33 or later).</summary>
    public static bool Available { get; } = OperatingSystem.IsLinux() && NativeLibrary.TryLoad("libc.so.6", out var libc)
                                            && NativeLibrary.TryGetExport(libc, "mallinfo2", out _);

    /// <summary>Takes a reading after a full collection and the finalizers that it queues (they free native handles).</summary>
    public static ProcessMemory Read()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var heap = Mallinfo2();
        return new ProcessMemory((long)(heap.Uordblks + heap.Hblkhd), GC.GetTotalMemory(forceFullCollection: true),
            DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    public override string ToString()
        => $"native heap in use {NativeInUse >> 10} KiB, managed heap {ManagedHeap >> 10} KiB, {LiveTensors} live tensors";
}
