using System.Runtime.InteropServices;

namespace GqaTransformer;

/// <summary>
/// Runs a parallel loop on libtorch's own OpenMP threads, which spin for a while after each libtorch call, instead of
/// .NET's thread pool, whose threads would share cores with the spinning ones (ADR 0006). Where libtorch's libgomp is
/// not found the loop runs on <see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/>.
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

    /// <summary>The libgomp whose <c>GOMP_parallel</c> runs the loops, or null where none was found.</summary>
    public static string? LibraryPath { get; private set; }

    /// <summary>GOMP_parallel of the libgomp that libtorch loaded, or null.</summary>
    private static delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void> Resolve()
    {
        try
        {
            if (!OperatingSystem.IsLinux()) return null;
            TorchSharp.torch.get_num_threads(); // make sure libtorch, and with it its libgomp, is loaded
            var mapped = File.ReadLines("/proc/self/maps")
                .Select(line => line.IndexOf('/') is var start and >= 0 ? line[start..] : "")
                .Where(file => file.Length > 0);
            string? path = ChooseLibgomp(mapped);
            if (path is null || !NativeLibrary.TryLoad(path, out var library)) return null;
            if (!NativeLibrary.TryGetExport(library, "GOMP_parallel", out var function)) return null;
            LibraryPath = path;
            return (delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void>)function;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>
    /// Among the files mapped into the process, the libgomp that libtorch uses: the one in the folder of
    /// <c>libtorch_cpu.so</c> (libtorch ships its own, <c>libgomp-&lt;hash&gt;.so.1</c>), else the only libgomp mapped.
    /// A process can hold several OpenMP runtimes (llama.cpp's ggml links the system <c>libgomp.so.1</c>); running our
    /// loops on another runtime's team would put a third and fourth thread on cores that libtorch's spinning team
    /// already holds. Null when libtorch_cpu is not mapped, or when several libgomps are and none sits beside it.
    /// </summary>
    internal static string? ChooseLibgomp(IEnumerable<string> mappedFiles)
    {
        var files = mappedFiles.Distinct(StringComparer.Ordinal).ToList();
        string? torch = files.FirstOrDefault(file => Path.GetFileName(file).StartsWith("libtorch_cpu.so", StringComparison.Ordinal));
        if (torch is null) return null;
        var runtimes = files.Where(file => Path.GetFileName(file).StartsWith("libgomp", StringComparison.Ordinal)).ToList();
        string? folder = Path.GetDirectoryName(torch);
        return runtimes.FirstOrDefault(file => Path.GetDirectoryName(file) == folder) ?? (runtimes.Count == 1 ? runtimes[0] : null);
    }
}
