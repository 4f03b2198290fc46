using System.Buffers;
using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Element-wise layers for the few values of a decode step on the CPU, in one managed pass instead of a chain of
/// libtorch calls. For one token a layer norm is about a thousand values, and each libtorch call costs microseconds of
/// dispatch and allocation: RMSNorm as seven calls took 15-60 µs here, the managed pass a few. The rounding follows the
/// libtorch chain step by step (float32 arithmetic, a rounding to the tensor's dtype wherever the chain makes one), so
/// half-precision results equal the chain's up to float32 summation order. Only for inference: with autograd
/// recording, the caller keeps the libtorch chain.
/// </summary>
internal static unsafe class SmallCpuOps
{
    /// <summary>Inputs up to this many elements take the managed pass (a decode step's activations, not a prompt's).</summary>
    public const long MaxElements = 1 << 16;

    /// <summary>Whether <paramref name="x"/> and <paramref name="weight"/> qualify: CPU, one float dtype, contiguous, small, no autograd.</summary>
    public static bool Supports(Tensor x, Tensor weight)
        => x.device_type == DeviceType.CPU && weight.device_type == DeviceType.CPU && x.dtype == weight.dtype
           && x.dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16
           && x.numel() <= MaxElements && x.is_contiguous() && weight.is_contiguous()
           && !(is_grad_enabled() && (x.requires_grad || weight.requires_grad));

    /// <summary>
    /// HuggingFace's Llama RMSNorm: <c>weight * (x32 * rsqrt(mean(x32²) + eps)).to(dtype)</c> over the last dimension,
    /// with <c>x32 = x.to(float32)</c>.
    /// </summary>
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        var output = empty_like(x);
        int size = (int)weight.numel();
        long rows = x.numel() / size;
        var dtype = x.dtype;
        byte* input = TensorMemory.Address(x), scale = TensorMemory.Address(weight), result = TensorMemory.Address(output);
        float epsilon = (float)eps;
        var row = ArrayPool<float>.Shared.Rent(size);
        try
        {
            fixed (float* values = row)
            {
                for (long r = 0; r < rows; r++)
                {
                    float sumOfSquares = 0;
                    for (int i = 0; i < size; i++)
                    {
                        float v = Load(input, r * size + i, dtype);
                        values[i] = v;
                        sumOfSquares += v * v;
                    }
                    float inverse = 1f / MathF.Sqrt(sumOfSquares / size + epsilon);
                    for (int i = 0; i < size; i++)
                    {
                        float normalised = Round(values[i] * inverse, dtype);
                        Store(result, r * size + i, dtype, normalised * Load(scale, i, dtype));
                    }
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(row);
        }
        return output;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Load(byte* data, long index, ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => ((float*)data)[index],
        ScalarType.Float16 => (float)((Half*)data)[index],
        _ => BitConverter.UInt32BitsToSingle((uint)((ushort*)data)[index] << 16),
    };

    /// <summary>Rounds to the dtype's precision (round to nearest even, as libtorch's casts), returned as float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Round(float value, ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => value,
        ScalarType.Float16 => (float)(Half)value,
        _ => BitConverter.UInt32BitsToSingle((uint)ToBFloat16(value) << 16),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(byte* data, long index, ScalarType dtype, float value)
    {
        switch (dtype)
        {
            case ScalarType.Float32: ((float*)data)[index] = value; break;
            case ScalarType.Float16: ((Half*)data)[index] = (Half)value; break;
            default: ((ushort*)data)[index] = ToBFloat16(value); break;
        }
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
