using System.Runtime.InteropServices;
using TorchSharp;

namespace GqaTransformer;

/// <summary>
/// Whether decoding on CUDA can replay a captured CUDA graph: TorchSharp has no graph API, so the library carries a
/// small native shim (<c>libgqa_cuda_graphs.so</c>, built against one libtorch's C++ ABI) over libtorch's
/// <c>at::cuda::CUDAGraph</c>. It is used only when CUDA is there, the shim loads, and the running libtorch is the
/// version it was built for; otherwise decoding is eager and <see cref="UnavailableReason"/> says why.
/// </summary>
public static class CudaGraphs
{
    private static readonly Lazy<(CudaGraphLibrary? Library, string? Reason)> s_state = new(CudaGraphLibrary.Load);

    /// <summary>Whether CUDA graphs can be used in this process.</summary>
    public static bool IsAvailable => s_state.Value.Library is not null;

    /// <summary>Why CUDA graphs cannot be used here (null when they can), in one sentence.</summary>
    public static string? UnavailableReason => s_state.Value.Reason;

    internal static CudaGraphLibrary? Library => s_state.Value.Library;

    /// <summary>
    /// Why a feature of the shim cannot be used here: no shim, or one built before the exports <paramref name="has"/>
    /// looks for; null when it can.
    /// </summary>
    internal static string? FeatureUnavailableReason(Func<CudaGraphLibrary, bool> has, string feature)
        => Library is not { } library ? UnavailableReason ?? "the native shim is not loaded"
         : !has(library) ? $"the native shim was built before it had {feature}; rebuild it (native/build.sh)"
         : null;
}

/// <summary>The shim's entry points (C ABI; each returns 0, or -1 with the reason in gqa_last_error).</summary>
internal sealed unsafe class CudaGraphLibrary
{
    internal const string FileName = "libgqa_cuda_graphs.so";

    private readonly delegate* unmanaged<nint> _lastError;
    public readonly delegate* unmanaged<int, nint*, int> Create;
    public readonly delegate* unmanaged<nint, int> EnterStream, ExitStream, CaptureBegin, CaptureEnd, Replay;
    public readonly delegate* unmanaged<nint, void> Destroy;

    /// <summary>libtorch's fused RMSNorm (x, weight, eps, out), or null in a shim built before it was added.</summary>
    public readonly delegate* unmanaged<nint, nint, double, nint*, int> RmsNorm;

    /// <summary>libtorch's CUDA autocast on (dtype) or off for this thread, or null in a shim built before it was added.</summary>
    public readonly delegate* unmanaged<int, int, int> Autocast;

    /// <summary>The caching allocator's (device, allocated, reserved) bytes, or null in a shim built before it was added.</summary>
    public readonly delegate* unmanaged<int, long*, long*, int> Memory;

    /// <summary>cudaMemGetInfo (device, free, total), or null in a shim built before it was added.</summary>
    public readonly delegate* unmanaged<int, long*, long*, int> MemGetInfo;

    /// <summary>The caching allocator's empty_cache, or null in a shim built before it was added.</summary>
    public readonly delegate* unmanaged<int> EmptyCache;

    private CudaGraphLibrary(nint library)
    {
        nint Export(string name) => NativeLibrary.GetExport(library, name);
        _lastError = (delegate* unmanaged<nint>)Export("gqa_last_error");
        Create = (delegate* unmanaged<int, nint*, int>)Export("gqa_graph_create");
        EnterStream = (delegate* unmanaged<nint, int>)Export("gqa_graph_enter_stream");
        ExitStream = (delegate* unmanaged<nint, int>)Export("gqa_graph_exit_stream");
        CaptureBegin = (delegate* unmanaged<nint, int>)Export("gqa_graph_capture_begin");
        CaptureEnd = (delegate* unmanaged<nint, int>)Export("gqa_graph_capture_end");
        Replay = (delegate* unmanaged<nint, int>)Export("gqa_graph_replay");
        Destroy = (delegate* unmanaged<nint, void>)Export("gqa_graph_destroy");
        if (NativeLibrary.TryGetExport(library, "gqa_rms_norm", out var rmsNorm))
            RmsNorm = (delegate* unmanaged<nint, nint, double, nint*, int>)rmsNorm;
        if (NativeLibrary.TryGetExport(library, "gqa_autocast", out var autocast))
            Autocast = (delegate* unmanaged<int, int, int>)autocast;
        if (NativeLibrary.TryGetExport(library, "gqa_cuda_memory", out var memory))
            Memory = (delegate* unmanaged<int, long*, long*, int>)memory;
        if (NativeLibrary.TryGetExport(library, "gqa_cuda_mem_get_info", out var memGetInfo))
            MemGetInfo = (delegate* unmanaged<int, long*, long*, int>)memGetInfo;
        if (NativeLibrary.TryGetExport(library, "gqa_cuda_empty_cache", out var emptyCache))
            EmptyCache = (delegate* unmanaged<int>)emptyCache;
    }

    /// <summary>Throws <see cref="InvalidOperationException"/> with the shim's reason unless <paramref name="status"/> is 0.</summary>
    public void Check(int status, string what)
    {
        if (status != 0)
            throw new InvalidOperationException($"CUDA graph {what} failed: {LastError}.");
    }

    /// <summary>The shim's reason for the last failure on this thread.</summary>
    public string LastError => Marshal.PtrToStringUTF8(_lastError()) ?? "no reason given";

    internal static (CudaGraphLibrary?, string?) Load()
    {
        try
        {
            if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
                return (null, "CUDA graphs need Linux x64.");
            if (!torch.cuda.is_available()) return (null, "CUDA graphs need CUDA, and TorchSharp finds no CUDA device.");
            string? path = Candidates().FirstOrDefault(File.Exists);
            if (path is null) return (null, $"{FileName} is not next to the application (build it with native/build.sh; see native/README.md).");
            if (!NativeLibrary.TryLoad(path, out var library))
                return (null, $"{path} does not load against this libtorch (built for another version?).");
            string built = Marshal.PtrToStringUTF8(((delegate* unmanaged<nint>)NativeLibrary.GetExport(library, "gqa_built_torch_version"))()) ?? "?";
            string? running = RunningLibtorchVersion();
            if (running is null)
                return (null, $"{FileName} was built for libtorch {built}, and the running libtorch's version cannot be read; decoding eagerly.");
            if (!SameRelease(built, running))
                return (null, $"{FileName} was built for libtorch {built}, but libtorch {running} is running; decoding eagerly.");
            return (new CudaGraphLibrary(library), null);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException or TypeInitializationException)
        {
            return (null, $"CUDA graphs are unavailable: {e.Message}");
        }
    }

    private static IEnumerable<string> Candidates()
    {
        if (Environment.GetEnvironmentVariable("GQA_CUDA_GRAPHS_LIBRARY") is { Length: > 0 } explicitPath) yield return explicitPath;
        yield return Path.Combine(AppContext.BaseDirectory, FileName);
        yield return Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", FileName);
    }

    /// <summary>
    /// The version of the libtorch_cuda.so this process loaded, from the files a PyTorch installation (<c>version.py</c>)
    /// or a libtorch distribution (<c>build-version</c>) keeps beside its lib folder; null if neither says.
    /// </summary>
    internal static string? RunningLibtorchVersion()
    {
        string? lib = File.ReadLines("/proc/self/maps")
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length >= 6 && fields[^1].EndsWith("/libtorch_cuda.so", StringComparison.Ordinal))
            .Select(fields => Path.GetDirectoryName(fields[^1]))
            .FirstOrDefault();
        if (lib is null) return null;
        string versionPy = Path.Combine(lib, "..", "version.py");
        if (File.Exists(versionPy))
            foreach (var line in File.ReadLines(versionPy))
                if (line.StartsWith("__version__", StringComparison.Ordinal))
                    return line.Split('=', 2)[1].Trim().Trim('\'', '"');
        string buildVersion = Path.Combine(lib, "..", "build-version");
        return File.Exists(buildVersion) ? File.ReadAllText(buildVersion).Trim() : null;
    }

    /// <summary>Whether two versions are the same release (2.11.0+cu130 and 2.11.0 are).</summary>
    internal static bool SameRelease(string a, string b) => a.Split('+')[0] == b.Split('+')[0];
}

/// <summary>One captured CUDA graph, owned: create, capture on its side stream, replay, dispose.</summary>
internal sealed unsafe class CudaGraph : IDisposable
{
    private readonly CudaGraphLibrary _library;
    private nint _handle;

    public CudaGraph(CudaGraphLibrary library, int device)
    {
        _library = library;
        nint handle;
        library.Check(library.Create(device, &handle), "creation");
        _handle = handle;
    }

    /// <summary>Runs <paramref name="work"/> on the graph's side stream (warm-up before capture, as PyTorch advises).</summary>
    public T OnSideStream<T>(Func<T> work)
    {
        _library.Check(_library.EnterStream(Handle), "stream switch");
        try
        {
            return work();
        }
        finally
        {
            _library.Check(_library.ExitStream(Handle), "stream switch");
        }
    }

    /// <summary>Records what <paramref name="work"/> issues on this thread into the graph (nothing runs); returns its result.</summary>
    public T Capture<T>(Func<T> work)
    {
        // Finalizers must not free CUDA memory on another thread while this one captures.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return OnSideStream(() =>
        {
            _library.Check(_library.CaptureBegin(Handle), "capture");
            T result;
            try
            {
                result = work();
            }
            finally
            {
                _library.Check(_library.CaptureEnd(Handle), "capture");
            }
            return result;
        });
    }

    /// <summary>Launches the captured work on the current stream.</summary>
    public void Replay() => _library.Check(_library.Replay(Handle), "replay");

    private nint Handle => _handle != 0 ? _handle : throw new ObjectDisposedException(nameof(CudaGraph));

    public void Dispose()
    {
        if (_handle == 0) return;
        _library.Destroy(_handle);
        _handle = 0;
    }
}
