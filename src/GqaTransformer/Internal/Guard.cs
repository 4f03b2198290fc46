using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>Argument checks that run before any native call, so bad input never reaches libtorch.</summary>
internal static class Guard
{
    public static void Positive(int value, string name)
    {
        if (value <= 0)
            throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive, but was {value}.");
    }

    public static void Rank(Tensor tensor, int rank, string name, string layout)
    {
        if (tensor.IsInvalid)
            throw new ArgumentException($"{name} has been disposed.", name);
        if (tensor.dim() != rank)
            throw new ArgumentException(
                $"{name} must have rank {rank} ({layout}), but has shape [{string.Join(", ", tensor.shape)}].", name);
    }

    public static void FloatingPoint(Tensor tensor, string name)
    {
        if (!IsFloatingPoint(tensor.dtype))
            throw new ArgumentException($"{name} must be a floating-point tensor, but has dtype {tensor.dtype}.", name);
    }

    public static void SameDevice(Tensor tensor, Device expected, string name)
    {
        if (tensor.device_type != expected.type || tensor.device_index != expected.index && expected.type != DeviceType.CPU)
            throw new ArgumentException(
                $"{name} is on device {tensor.device}, but the module's parameters are on {expected}. Move it with .to(...) first.", name);
    }

    public static void SameDtype(Tensor tensor, ScalarType expected, string name)
    {
        if (tensor.dtype != expected)
            throw new ArgumentException($"{name} has dtype {tensor.dtype}, but {expected} was expected.", name);
    }

    public static bool IsFloatingPoint(ScalarType dtype)
        => dtype is ScalarType.Float32 or ScalarType.Float64 or ScalarType.Float16 or ScalarType.BFloat16;

    /// <summary>Whether two tensors have the same shape (read size by size: <c>Tensor.shape</c> allocates, about 1 µs a call).</summary>
    public static bool SameShape(Tensor a, Tensor b)
    {
        long rank = a.dim();
        if (b.dim() != rank) return false;
        for (int i = 0; i < rank; i++)
            if (a.size(i) != b.size(i)) return false;
        return true;
    }

    public static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";

    public static string Shape(long[] shape) => "[" + string.Join(", ", shape) + "]";
}
