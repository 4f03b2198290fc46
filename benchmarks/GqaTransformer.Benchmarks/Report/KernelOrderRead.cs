using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace GqaTransformer.Benchmarks.Report;

/// <summary>
/// A read of K and V with no arithmetic, in the order the fused decode kernel reads them: one task per KV head on
/// libtorch's OpenMP team, 32 rows of K, then the same 32 rows of V, and so on, each block's rows fetched into L2 one
/// block ahead as the kernel fetches them. Beside the memory floor (a steady 1 GiB stream) it shows what this order of
/// reading alone costs, before any arithmetic.
/// </summary>
internal static unsafe class KernelOrderRead
{
    private const int Block = 32;

    private static float s_sink;

    /// <summary>Reads float32 key/value [B, Hkv, S, D] whose rows are contiguous (cache views qualify).</summary>
    public static void Run(Tensor key, Tensor value)
    {
        long kvHeads = key.size(1), s = key.size(2);
        int d = (int)key.size(3);
        if (key.dtype != ScalarType.Float32 || d % 32 != 0 || key.stride(2) != d || value.stride(2) != d)
            throw new ArgumentException($"KernelOrderRead reads float32 rows of a multiple of 32 floats, contiguous; got {key.dtype}, D = {d}.");
        using var k0 = key.select(0, 0).select(0, 0);
        using var v0 = value.select(0, 0).select(0, 0);
        long kAddress = (long)TensorMemory.Address(k0), vAddress = (long)TensorMemory.Address(v0);
        long kHead = key.stride(1), kBatch = key.stride(0), vHead = value.stride(1), vBatch = value.stride(0);
        int heads = (int)(key.size(0) * kvHeads);
        OpenMpTeam.For(heads, get_num_threads(), h =>
        {
            long b = h / kvHeads, i = h % kvHeads;
            s_sink += Head((float*)kAddress + b * kBatch + i * kHead, (float*)vAddress + b * vBatch + i * vHead, (int)s, d);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Head(float* k, float* v, int s, int d)
    {
        var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
        long blockFloats = (long)Block * d;
        for (int t0 = 0; t0 < s; t0 += Block)
        {
            int n = Math.Min(Block, s - t0);
            bool ahead = n == Block && t0 + 2 * Block <= s;
            for (int pass = 0; pass < 2; pass++)
            {
                float* rows = (pass == 0 ? k : v) + t0 * (long)d;
                byte* next = (byte*)(rows + blockFloats);
                for (int r = 0; r < n; r++)
                {
                    if (ahead && Sse.IsSupported)
                        for (int line = 0; line < d * 4; line += 64) Sse.Prefetch1(next + (long)r * d * 4 + line);
                    float* row = rows + (long)r * d;
                    for (int c = 0; c < d; c += 32)
                    {
                        a0 += Vector256.Load(row + c); a1 += Vector256.Load(row + c + 8);
                        a2 += Vector256.Load(row + c + 16); a3 += Vector256.Load(row + c + 24);
                    }
                }
            }
        }
        return Vector256.Sum((a0 + a1) + (a2 + a3));
    }
}
