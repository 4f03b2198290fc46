using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GqaTransformer;

/// <summary>
/// How sixteen 32-bit words, each holding a pair of 16-bit values (element 2j in the low half, 2j + 1 in the high half),
/// become float32 without a conversion instruction (.NET exposes none): the even and the odd elements as two vectors.
/// The decode linear (<see cref="DecodeLinear"/>) reads 16-bit weights this way and the fused attention kernel
/// (<see cref="FusedCpuDecode"/>) 16-bit keys and values; the other operand is arranged in the same even/odd order.
/// A struct per dtype, so each use is inlined.
/// </summary>
internal interface IHalfPairs
{
    /// <summary>What the other operand of each product is multiplied by: 1, or 2^112 for float16 (see <see cref="HalfPairs"/>).</summary>
    static abstract float Scale { get; }

    /// <summary>The even and the odd elements as float32, times 1 / <see cref="Scale"/>; exact for every finite value.</summary>
    static abstract (Vector512<float> Even, Vector512<float> Odd) Split(Vector512<uint> words);

    /// <summary>Nonzero lanes where a word holds a value <see cref="Split"/> cannot represent (a float16 infinity or NaN).</summary>
    static abstract Vector512<uint> Specials(Vector512<uint> words);
}

/// <summary>bfloat16: each value is the upper half of a float32, exact for every value.</summary>
internal readonly struct BFloat16Pairs : IHalfPairs
{
    public static float Scale => 1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)] // without it the JIT calls it, spilling the accumulators around each call
    public static (Vector512<float> Even, Vector512<float> Odd) Split(Vector512<uint> words)
        => (Vector512.ShiftLeft(words, 16).AsSingle(), (words & Vector512.Create(0xFFFF0000u)).AsSingle());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> Specials(Vector512<uint> words) => Vector512<uint>.Zero;
}

/// <summary>
/// float16: sign, exponent and mantissa moved into float32's positions unchanged (an arithmetic shift right by 3, then
/// a mask) give the value times 2^-112, for normal and subnormal values alike, so the other operand is scaled by 2^112
/// instead and the products are exact. Infinities and NaNs (exponent 31) would come out finite: adding 1 to a half's
/// exponent field then carries into its sign bit's place, which <see cref="Specials"/> reports.
/// </summary>
internal readonly struct HalfPairs : IHalfPairs
{
    /// <summary>2^112: float16's exponent bias (15) re-based to float32's (127).</summary>
    private const float TwoTo112 = (float)(1L << 56) * (1L << 56);

    public static float Scale => TwoTo112;

    [MethodImpl(MethodImplOptions.AggressiveInlining)] // without it the JIT calls it, spilling the accumulators around each call
    public static (Vector512<float> Even, Vector512<float> Odd) Split(Vector512<uint> words)
    {
        var fields = Vector512.Create(0x8FFFE000u);     // sign, then exponent and mantissa 3 bits lower, as float32 places them
        var even = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(words, 16).AsInt32(), 3).AsUInt32() & fields;
        var odd = Vector512.ShiftRightArithmetic(words.AsInt32(), 3).AsUInt32() & fields;
        return (even.AsSingle(), odd.AsSingle());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> Specials(Vector512<uint> words)
        => ((words & Vector512.Create(0x7C007C00u)) + Vector512.Create(0x04000400u)) & Vector512.Create(0x80008000u);
}
