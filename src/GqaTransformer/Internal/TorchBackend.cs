using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Loads TorchSharp's native backend before the library's first native call and, when that fails, says why in words a
/// user can act on, with TorchSharp's own exception inside. TorchSharp's message names a package even when the cause is
/// a libstdc++ too old for its <c>libLibTorchSharp.so</c> (ADR 0005).
/// </summary>
internal static class TorchBackend
{
    private static readonly Lazy<Exception?> s_failure = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Returns <paramref name="name"/> once the backend is loaded; throws <see cref="InvalidOperationException"/> if it cannot be.</summary>
    public static string Checked(string name)
    {
        EnsureLoaded();
        return name;
    }

    /// <summary>Throws <see cref="InvalidOperationException"/> with the cause if the native backend cannot be loaded.</summary>
    public static void EnsureLoaded()
    {
        if (s_failure.Value is { } failure)
            throw new InvalidOperationException(Explain(failure.Message, LoaderMessage()), failure);
    }

    private static Exception? Load()
    {
        try
        {
            InitializeCpu();
            return null;
        }
        catch (Exception e)
        {
            return e is TypeInitializationException { InnerException: { } inner } ? inner : e;
        }
    }

    // Its own method: TorchSharp loads the backend in torch's type initializer, which the runtime may run as soon as it
    // compiles a method that touches torch; this way that happens inside the try above.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void InitializeCpu() => InitializeDeviceType(DeviceType.CPU);

    /// <summary>What the system loader says of the <c>libLibTorchSharp.so</c> next to the application, if there is one.</summary>
    private static string? LoaderMessage()
    {
        if (!OperatingSystem.IsLinux()) return null;
        string[] places = [AppContext.BaseDirectory, Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native")];
        foreach (var place in places)
        {
            string path = Path.Combine(place, "libLibTorchSharp.so");
            if (!File.Exists(path)) continue;
            try
            {
                NativeLibrary.Free(NativeLibrary.Load(path));
                return null;
            }
            catch (DllNotFoundException e)
            {
                return e.Message;
            }
        }
        return "libLibTorchSharp.so is not next to the application.";
    }

    /// <summary>Our message for a failed load, from TorchSharp's message and the system loader's.</summary>
    internal static string Explain(string torchSharpMessage, string? loaderMessage)
    {
        string both = torchSharpMessage + " " + loaderMessage;
        const string start = "GqaTransformer could not load TorchSharp's native backend (libtorch). ";
        if (both.Contains("GLIBCXX", StringComparison.Ordinal))
            return start + "This system's libstdc++ is older than the GLIBCXX_3.4.32 that TorchSharp's libLibTorchSharp.so asks for " +
                   "(Debian 12, Ubuntu 22.04). GqaTransformer's build step marks that requirement weak in the copy in your build " +
                   "output; it did not run for this one: build with the GqaTransformer package or project reference, do not set " +
                   "GqaTransformerPatchGlibcxx=false, and for 'dotnet publish' see docs/guide.md (troubleshooting). Loader: " + loaderMessage;
        if (both.Contains("libtorch", StringComparison.OrdinalIgnoreCase) || both.Contains("not next to", StringComparison.Ordinal)
            || both.Contains("cannot open shared object", StringComparison.Ordinal))
            return start + "No backend package seems to be referenced. GqaTransformer references TorchSharp alone and leaves the " +
                   "native backend to the application: add one, e.g. 'dotnet add package libtorch-cpu-linux-x64 --version 2.10.0' " +
                   "(CPU, Linux x64), or for CUDA put a CUDA libtorch's lib folder on LD_LIBRARY_PATH (docs/guide.md). " +
                   (loaderMessage is null ? "" : "Loader: " + loaderMessage);
        return start + torchSharpMessage;
    }
}
