using System.Runtime.InteropServices;

namespace GqaTransformer;

/// <summary>
/// Runs a parallel loop on libtorch's own OpenMP threads instead of .NET's thread pool. After each parallel libtorch
/// call, libgomp's workers spin for milliseconds waiting for the next one; a .NET worker thread started in that window
/// shares its core with a spinning thread, and our fused decode kernel ran about 1.5x slower right after a libtorch
/// matmul than after a pause (measured, 2-core VM). Handing the loop to the spinning team (<c>GOMP_parallel</c> of the
/// libgomp instance libtorch loaded) uses the threads that are already awake. Where that libgomp is not found (another
/// OpenMP runtime, another OS) the loop runs on <see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/>.
/// </summary>
internal static unsafe class OpenMpTeam
{
    private static readonly delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void> s_parallel = Resolve();

    /// <summary>Whether loops run on libtorch's OpenMP team.</summary>
    public static bool IsAvailable => s_parallel != null;

    /// <summary>Calls <paramref name="body"/> for 0..count-1 on up to <paramref name="threads"/> threads; indices are claimed one at a time.</summary>
    public static void For(int count, int threads, Action<int> body)
    {
        if (threads <= 1 || count <= 1)
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        if (!IsAvailable)
        {
            Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
            return;
        }
        var job = new Job(body, count);
        var handle = GCHandle.Alloc(job);
        try
        {
            s_parallel(&Work, (void*)GCHandle.ToIntPtr(handle), (uint)Math.Min(threads, count), 0);
        }
        finally
        {
            handle.Free();
        }
        if (job.Error is { } error) throw new AggregateException(error);
    }

    private sealed class Job(Action<int> body, int count)
    {
        public readonly Action<int> Body = body;
        public readonly int Count = count;
        public int Next;
        public Exception? Error;
    }

    /// <summary>Runs on every thread of the team, the caller included; an exception must not cross into native code.</summary>
    [UnmanagedCallersOnly]
    private static void Work(void* state)
    {
        var job = (Job)GCHandle.FromIntPtr((IntPtr)state).Target!;
        try
        {
            for (int i = Interlocked.Increment(ref job.Next) - 1; i < job.Count && job.Error is null; i = Interlocked.Increment(ref job.Next) - 1)
                job.Body(i);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref job.Error, e, null);
        }
    }

    /// <summary>GOMP_parallel of the libgomp already mapped into this process (the one libtorch uses), or null.</summary>
    private static delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void> Resolve()
    {
        try
        {
            if (!OperatingSystem.IsLinux()) return null;
            TorchSharp.torch.get_num_threads(); // make sure libtorch, and with it its libgomp, is loaded
            string? path = File.ReadLines("/proc/self/maps")
                .Select(line => line.IndexOf('/') is var start and >= 0 ? line[start..] : "")
                .FirstOrDefault(file => Path.GetFileName(file).StartsWith("libgomp", StringComparison.Ordinal));
            if (path is null || !NativeLibrary.TryLoad(path, out var library)) return null;
            return NativeLibrary.TryGetExport(library, "GOMP_parallel", out var function)
                ? (delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void>)function
                : null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
