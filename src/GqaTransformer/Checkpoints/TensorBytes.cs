using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Moves a contiguous CPU tensor's bytes to or from a stream in chunks, through spans over the tensor's own memory:
/// no managed copy, and no 2 GB limit per tensor.
/// </summary>
internal static class TensorBytes
{
    private const long ChunkBytes = 64 << 20;

    /// <summary>Fills <paramref name="destination"/> (contiguous, CPU) from <paramref name="stream"/>.</summary>
    /// <exception cref="EndOfStreamException">The stream ends first.</exception>
    public static void ReadInto(Stream stream, Tensor destination)
    {
        foreach (var chunk in Chunks(destination))
            using (chunk)
                stream.ReadExactly(chunk.bytes);
    }

    /// <summary>Writes <paramref name="source"/>'s bytes (any layout or device; copied to a contiguous CPU tensor first if needed).</summary>
    public static void WriteTo(Stream stream, Tensor source)
    {
        using var scope = NewDisposeScope();
        foreach (var chunk in Chunks(source.detach().cpu().contiguous()))
            using (chunk)
                stream.Write(chunk.bytes);
    }

    private static IEnumerable<Tensor> Chunks(Tensor tensor)
    {
        if (tensor.numel() == 0) yield break;
        var flat = tensor.view(-1);
        long perChunk = Math.Max(1, ChunkBytes / tensor.element_size());
        for (long start = 0; start < flat.shape[0]; start += perChunk)
            yield return flat.narrow(0, start, Math.Min(perChunk, flat.shape[0] - start));
    }
}
