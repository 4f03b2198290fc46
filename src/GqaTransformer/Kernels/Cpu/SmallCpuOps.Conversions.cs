using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>float32 ↔ bfloat16/float16 conversions of the managed passes, rounding as libtorch's casts do.</summary>
internal static unsafe partial class SmallCpuOps
{
    /// <summary>Reads <paramref name="destination"/>.Length values of <paramref name="dtype"/> at <paramref name="source"/> as float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    public static void ToSingle(byte* source, ScalarType dtype, Span<float> destination)
    {
        fixed (float* target = destination)
        {
            switch (dtype)
            {
                case ScalarType.Float32:
                    new ReadOnlySpan<float>(source, destination.Length).CopyTo(destination);
                    break;
                case ScalarType.Float16:
                    Widen<HalfBits>((ushort*)source, destination.Length, target);
                    break;
                default:
                    Widen<BFloat16Bits>((ushort*)source, destination.Length, target);
                    break;
            }
        }
    }

    /// <summary>
    /// Widens <paramref name="count"/> 16-bit values into float32: 16 at a time, then 8, then one by one, so nothing past
    /// the last value is read (the fused decode kernel widens blocks of K/V rows, a multiple of 8 values, through this).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Widen<TBits>(ushort* source, int count, float* target) where TBits : struct, IWidening
    {
        int i = 0;
        for (; i + 16 <= count; i += 16)
        {
            var bits = Vector256.Load(source + i);
            TBits.ToSingle(Vector256.WidenLower(bits)).Store(target + i);
            TBits.ToSingle(Vector256.WidenUpper(bits)).Store(target + i + 8);
        }
        if (i + 8 <= count)
        {
            var bits = Vector128.Load(source + i);
            TBits.ToSingle(Vector256.Create(Vector128.WidenLower(bits), Vector128.WidenUpper(bits))).Store(target + i);
            i += 8;
        }
        for (; i < count; i++) target[i] = TBits.ToSingle(Vector256.CreateScalar((uint)source[i])).ToScalar();
    }

    /// <summary>How 16-bit values held in the low half of each 32-bit lane become float32 (a struct, so each use is inlined).</summary>
    public interface IWidening
    {
        static abstract Vector256<float> ToSingle(Vector256<uint> bits);
    }

    public readonly struct HalfBits : IWidening
    {
        public static Vector256<float> ToSingle(Vector256<uint> bits) => HalfToSingle(bits);
    }

    public readonly struct BFloat16Bits : IWidening
    {
        public static Vector256<float> ToSingle(Vector256<uint> bits) => Vector256.ShiftLeft(bits, 16).AsSingle(); // the upper half of a float32
    }

    /// <summary>Writes float32 <paramref name="values"/> as <paramref name="dtype"/> at <paramref name="destination"/>, rounding to nearest even.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    public static void FromSingle(ReadOnlySpan<float> values, ScalarType dtype, byte* destination)
    {
        int n = values.Length;
        switch (dtype)
        {
            case ScalarType.Float32:
                values.CopyTo(new Span<float>(destination, n));
                break;
            default:
                fixed (float* source = values)
                {
                    ushort* bits = (ushort*)destination;
                    bool half = dtype == ScalarType.Float16;
                    int i = 0;
                    for (; i + 8 <= n; i += 8)
                    {
                        var value = Vector256.Load(source + i);
                        var lanes = half ? SingleToHalf(value) : Vector256.ShiftRightLogical(BFloat16Round(value), 16);
                        Vector256.Narrow(lanes, lanes).GetLower().Store(bits + i);
                    }
                    for (; i < n; i++) bits[i] = half ? BitConverter.HalfToUInt16Bits((Half)source[i]) : ToBFloat16(source[i]);
                }
                break;
        }
    }

    /// <summary>Rounds float32 <paramref name="values"/> to <paramref name="dtype"/>'s precision in place (round to nearest even, as libtorch's casts).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    public static void RoundInPlace(Span<float> values, ScalarType dtype)
    {
        int n = values.Length;
        switch (dtype)
        {
            case ScalarType.Float32:
                break;
            default:
                fixed (float* data = values)
                {
                    bool half = dtype == ScalarType.Float16;
                    int i = 0;
                    for (; i + 8 <= n; i += 8)
                    {
                        var value = Vector256.Load(data + i);
                        (half ? HalfToSingle(SingleToHalf(value)) : (BFloat16Round(value) & Vector256.Create(0xFFFF0000u)).AsSingle()).Store(data + i);
                    }
                    for (; i < n; i++) data[i] = half ? (float)(Half)data[i] : BitConverter.UInt32BitsToSingle((uint)ToBFloat16(data[i]) << 16);
                }
                break;
        }
    }

    /// <summary>
    /// IEEE half → single for 8 values held in the low 16 bits of each lane: shifting exponent and mantissa into place
    /// and multiplying by 2^112 re-biases the exponent (and normalises subnormals); infinities and NaNs get the full
    /// exponent; the sign is moved last.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> HalfToSingle(Vector256<uint> half)
    {
        var magnitude = half & Vector256.Create(0x7FFFu);
        var shifted = Vector256.ShiftLeft(magnitude, 13);
        var value = shifted.AsSingle() * Vector256.Create(BitConverter.UInt32BitsToSingle(0x77800000u)) /* 2^112 */;
        var special = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u)).AsSingle();
        value = Vector256.ConditionalSelect(special, (shifted | Vector256.Create(0x7F800000u)).AsSingle(), value);
        return value | Vector256.ShiftLeft(half & Vector256.Create(0x8000u), 16).AsSingle();
    }

    /// <summary>
    /// IEEE single → half for 8 values, round to nearest even, into the low 16 bits of each lane: overflow gives
    /// infinity, NaN a quiet NaN, tiny values half subnormals or zero. The rounding is done by a float32 addition that
    /// lines the value up with the half's last mantissa bit (as in Maratyszcza's FP16 library), so it is IEEE's own.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> SingleToHalf(Vector256<float> value)
    {
        var bits = value.AsUInt32();
        var doubled = bits + bits;                                                         // the sign shifted out
        var sign = Vector256.ShiftRightLogical(bits & Vector256.Create(0x80000000u), 16);
        var magnitude = Vector256.Abs(value) * Vector256.Create(BitConverter.UInt32BitsToSingle(0x77800000u)) /* 2^112 */
                        * Vector256.Create(BitConverter.UInt32BitsToSingle(0x08800000u)) /* 2^-110 */;
        var bias = Vector256.Max(doubled & Vector256.Create(0xFF000000u), Vector256.Create(0x71000000u));
        var rounded = (Vector256.ShiftRightLogical(bias, 1) + Vector256.Create(0x07800000u)).AsSingle() + magnitude;
        var roundedBits = rounded.AsUInt32();
        var finite = (Vector256.ShiftRightLogical(roundedBits, 13) & Vector256.Create(0x7C00u)) + (roundedBits & Vector256.Create(0x0FFFu));
        var isNaN = Vector256.GreaterThan(doubled, Vector256.Create(0xFF000000u));
        return sign | Vector256.ConditionalSelect(isNaN, Vector256.Create(0x7E00u), finite);
    }

    /// <summary>
    /// float32 bits with round-to-nearest-even applied to the upper 16 (the bfloat16); NaN becomes the quiet NaN 0x7FC0,
    /// as c10::BFloat16 does. Only the upper halves of the lanes are meaningful.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> BFloat16Round(Vector256<float> values)
    {
        var bits = values.AsUInt32();
        var rounded = bits + Vector256.Create(0x7FFFu) + (Vector256.ShiftRightLogical(bits, 16) & Vector256<uint>.One);
        var isNumber = Vector256.Equals(values, values).AsUInt32();                 // false only for NaN
        return Vector256.ConditionalSelect(isNumber, rounded, Vector256.Create(0x7FC00000u));
    }

    /// <summary>float32 → bfloat16 bits, round to nearest even; NaN stays NaN (as c10::BFloat16 does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort ToBFloat16(float value)
    {
        if (float.IsNaN(value)) return 0x7FC0;
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }
}
