using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks.Report;

/// <summary>
/// This machine's multiply-add throughput on the threads the attention kernel runs on: a fixed count of independent
/// fused multiply-adds, 16 float lanes each (one 512-bit instruction, or two 256-bit ones without AVX-512), in chunks
/// claimed one at a time on libtorch's OpenMP team, as the kernel's tasks are. An attention step cannot take less than
/// its multiply-adds at this rate: its arithmetic floor, beside the memory floor of its KV bytes.
/// </summary>
internal static class ArithmeticProbe
{
    private const int Chunks = 64;
    private const long FmasPerChunk = 1L << 16;

    /// <summary>Multiply-adds (lanes) that one <see cref="Run"/> performs.</summary>
    public const double MultiplyAdds = Chunks * FmasPerChunk * 16.0;

    private static float s_sink;

    /// <summary>One timed unit of work: <see cref="MultiplyAdds"/> lanes of FMA on all torch threads.</summary>
    public static void Run() => OpenMpTeam.For(Chunks, get_num_threads(), _ => s_sink += Chain(FmasPerChunk / 8));

    /// <summary>Multiply-adds per second for one <see cref="Run"/> that took <paramref name="ms"/>.</summary>
    public static double Rate(double ms) => MultiplyAdds / (ms / 1000);

    /// <summary>8 independent chains of x = x·m + c (bounded: x tends to 0.1), <paramref name="steps"/> steps each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Chain(long steps)
    {
        var m = Vector256.Create(0.999999f);
        var c = Vector256.Create(1e-7f);
        if (Vector512.IsHardwareAccelerated)
        {
            var wm = Vector512.Create(m, m);
            var wc = Vector512.Create(c, c);
            var a0 = Vector512<float>.One; var a1 = a0; var a2 = a0; var a3 = a0; var a4 = a0; var a5 = a0; var a6 = a0; var a7 = a0;
            for (long i = 0; i < steps; i++)
            {
                a0 = Vector512.FusedMultiplyAdd(a0, wm, wc); a1 = Vector512.FusedMultiplyAdd(a1, wm, wc);
                a2 = Vector512.FusedMultiplyAdd(a2, wm, wc); a3 = Vector512.FusedMultiplyAdd(a3, wm, wc);
                a4 = Vector512.FusedMultiplyAdd(a4, wm, wc); a5 = Vector512.FusedMultiplyAdd(a5, wm, wc);
                a6 = Vector512.FusedMultiplyAdd(a6, wm, wc); a7 = Vector512.FusedMultiplyAdd(a7, wm, wc);
            }
            return Vector512.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)));
        }
        var b0 = Vector256<float>.One; var b1 = b0; var b2 = b0; var b3 = b0; var b4 = b0; var b5 = b0; var b6 = b0; var b7 = b0;
        for (long i = 0; i < 2 * steps; i++)                                     // two 256-bit FMAs per 16 lanes
        {
            b0 = Vector256.FusedMultiplyAdd(b0, m, c); b1 = Vector256.FusedMultiplyAdd(b1, m, c);
            b2 = Vector256.FusedMultiplyAdd(b2, m, c); b3 = Vector256.FusedMultiplyAdd(b3, m, c);
            b4 = Vector256.FusedMultiplyAdd(b4, m, c); b5 = Vector256.FusedMultiplyAdd(b5, m, c);
            b6 = Vector256.FusedMultiplyAdd(b6, m, c); b7 = Vector256.FusedMultiplyAdd(b7, m, c);
        }
        return Vector256.Sum(((b0 + b1) + (b2 + b3)) + ((b4 + b5) + (b6 + b7)));
    }
}
