using System.Runtime.InteropServices;

namespace GqaTransformer;

/// <summary>
/// Gives freed native heap pages back to the system after a model's weights are freed. glibc raises its mmap threshold
/// to the size of the largest block freed (up to 32 MiB), so a checkpoint's tensors land in the heap and stay resident
/// after they are freed: each load/dispose cycle of a 600 MB model grew the process by hundreds of MB until
/// <c>malloc_trim</c> returned them (ADR 0019). Elsewhere than glibc on Linux this does nothing.
/// </summary>
internal static partial class NativeHeap
{
    private static readonly bool s_glibc = OperatingSystem.IsLinux() && NativeLibrary.TryLoad("libc.so.6", out var libc)
                                           && NativeLibrary.TryGetExport(libc, "malloc_trim", out _);

    [LibraryImport("libc.so.6", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);

    /// <summary>Returns the heap's free pages to the system (glibc's <c>malloc_trim(0)</c>).</summary>
    public static void Trim()
    {
        if (s_glibc) MallocTrim(0);
    }
}
