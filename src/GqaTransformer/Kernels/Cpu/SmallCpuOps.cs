using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Element-wise layers for the few values of a decode step on the CPU, in one managed pass instead of a chain of
/// libtorch calls. For one token a layer norm is about a thousand values, and each libtorch call costs microseconds of
/// dispatch and allocation: RMSNorm as seven calls took 15-60 µs here, RoPE as fourteen about 40 µs; the managed passes
/// take a few. The rounding follows the libtorch chain step by step (float32 arithmetic, a rounding to the tensor's
/// dtype wherever the chain makes one), so half-precision results equal the chain's up to float32 summation order.
/// Only for inference: with autograd recording, the caller keeps the libtorch chain.
/// </summary>
internal static unsafe class SmallCpuOps
{
    /// <summary>Inputs up to this many elements take the managed pass (a decode step's activations, not a prompt's).</summary>
    public const long MaxElements = 1 << 16;

    /// <summary>Whether <paramref name="x"/> and <paramref name="weight"/> qualify: CPU, one float dtype, contiguous, small, no autograd.</summary>
    public static bool Supports(Tensor x, Tensor weight)
        => Qualifies(x, weight.dtype) && Qualifies(weight, x.dtype);

    /// <summary>
    /// Whether the RoPE inputs qualify: all four on the CPU in one float dtype, contiguous, small, no autograd, and
    /// shaped exactly query [B, H, T, D], key [B, Hkv, T, D], cos and sin [B, T, D] with D even (anything else, such as
    /// tables that broadcast, takes the libtorch chain).
    /// </summary>
    public static bool SupportsRotary(Tensor query, Tensor key, Tensor cos, Tensor sin)
        => Qualifies(query, cos.dtype) && Qualifies(key, cos.dtype) && Qualifies(cos, sin.dtype) && Qualifies(sin, query.dtype)
           && query.dim() == 4 && key.dim() == 4 && cos.dim() == 3 && Guard.SameShape(cos, sin)
           && cos.size(2) % 2 == 0 && FitsTables(query, cos) && FitsTables(key, cos);

    private static bool FitsTables(Tensor x, Tensor table)
        => x.size(0) == table.size(0) && x.size(2) == table.size(1) && x.size(3) == table.size(2);

    private static bool Qualifies(Tensor x, ScalarType dtype) => IsInferenceInput(x, dtype) && x.numel() <= MaxElements;

    /// <summary>Whether <paramref name="x"/> is a contiguous CPU tensor of <paramref name="dtype"/> (float32, bfloat16 or float16) that autograd is not recording.</summary>
    public static bool IsInferenceInput(Tensor x, ScalarType dtype)
        => x.device_type == DeviceType.CPU && x.dtype == dtype && IsSupported(dtype)
           && x.is_contiguous() && !(x.requires_grad && is_grad_enabled());

    /// <summary>Whether the managed passes read and write <paramref name="dtype"/>: float32, bfloat16, float16.</summary>
    public static bool IsSupported(ScalarType dtype) => dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16;

    /// <summary>
    /// HuggingFace's Llama RMSNorm: <c>weight * (x32 * rsqrt(mean(x32²) + eps)).to(dtype)</c> over the last dimension,
    /// with <c>x32 = x.to(float32)</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        var output = empty_like(x);
        int size = (int)weight.numel();
        long rows = x.numel() / size;
        var dtype = x.dtype;
        byte* input = TensorMemory.Address(x), scale = TensorMemory.Address(weight), result = TensorMemory.Address(output);
        int elementSize = KvCache.ElementSize(dtype);
        var buffer = ArrayPool<float>.Shared.Rent(2 * size);
        try
        {
            var values = buffer.AsSpan(0, size);
            var weights = buffer.AsSpan(size, size);
            ToSingle(scale, dtype, weights);
            for (long r = 0; r < rows; r++)
            {
                ToSingle(input + r * size * elementSize, dtype, values);
                float inverse = 1f / MathF.Sqrt(VectorOps.SumOfSquares(values) / size + (float)eps);
                VectorOps.Scale(values, inverse);
                RoundInPlace(values, dtype);                                  // (x32 * rsqrt(…)).to(dtype)
                VectorOps.Multiply(values, weights, values);
                FromSingle(values, dtype, result + r * size * elementSize);   // weight * …, in dtype
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
        return output;
    }

    /// <summary>
    /// HuggingFace's RoPE, <c>x * cos + rotate_half(x) * sin</c>, for queries [B, H, T, D] and keys [B, Hkv, T, D]
    /// with tables [B, T, D]: each product and the sum rounded to the dtype, as the libtorch chain does.
    /// </summary>
    public static (Tensor Query, Tensor Key) Rotary(Tensor query, Tensor key, Tensor cos, Tensor sin)
    {
        int d = (int)query.size(-1);
        var buffer = ArrayPool<float>.Shared.Rent(5 * d);
        try
        {
            var rotatedQuery = RotateRows(query, cos, sin, buffer.AsSpan(0, 5 * d));
            return (rotatedQuery, RotateRows(key, cos, sin, buffer.AsSpan(0, 5 * d)));
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // called per decode step: skip the unoptimised first tier
    private static Tensor RotateRows(Tensor x, Tensor cos, Tensor sin, Span<float> buffer)
    {
        var output = empty_like(x);
        var dtype = x.dtype;
        long heads = x.size(1), tokens = x.size(2);
        int d = (int)x.size(3), half = d / 2, elementSize = KvCache.ElementSize(dtype);
        long rowBytes = (long)d * elementSize;
        var values = buffer[..d];
        var rotated = buffer.Slice(d, d);
        var c = buffer.Slice(2 * d, d);
        var s = buffer.Slice(3 * d, d);
        var product = buffer.Slice(4 * d, d);
        byte* input = TensorMemory.Address(x), result = TensorMemory.Address(output);
        byte* cosines = TensorMemory.Address(cos), sines = TensorMemory.Address(sin);
        long rows = x.size(0) * heads * tokens;
        for (long r = 0; r < rows; r++)
        {
            long table = r / (heads * tokens) * tokens + r % tokens;          // row [b, t] of the tables
            ToSingle(cosines + table * rowBytes, dtype, c);
            ToSingle(sines + table * rowBytes, dtype, s);
            ToSingle(input + r * rowBytes, dtype, values);
            VectorOps.Negate(values[half..], rotated[..half]);                // rotate_half: [−x₂, x₁]
            values[..half].CopyTo(rotated[half..]);
            VectorOps.Multiply(values, c, values);
            RoundInPlace(values, dtype);                                      // x * cos
            VectorOps.Multiply(rotated, s, product);
            RoundInPlace(product, dtype);                                     // rotate_half(x) * sin
            VectorOps.Add(values, product, values);
            FromSingle(values, dtype, result + r * rowBytes);                 // the sum, rounded
        }
        return output;
    }

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
