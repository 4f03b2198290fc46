using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">Tensor name (state-dict key).</param>
/// <param name="Dtype">Element type.</param>
/// <param name="Shape">Shape.</param>
/// <param name="Offset">Byte offset of the data from the start of the file.</param>
/// <param name="Length">Byte length of the data.</param>
public sealed record SafetensorsEntry(string Name, ScalarType Dtype, long[] Shape, long Offset, long Length);

/// <summary>
/// A safetensors file opened for reading, one tensor at a time. The header is parsed and every entry checked
/// against the file (known dtype, data inside the file, byte length equal to shape × element size, and the tensors'
/// bytes tiling the data section in order, without gaps or overlaps, as the format requires) when the file is opened,
/// so a corrupt or truncated file fails at <see cref="Open"/> with an <see cref="InvalidDataException"/> that names
/// the file, before any tensor is created. <see cref="Read"/> streams one tensor's bytes from disk straight
/// into the tensor's memory.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>Largest header the format allows (100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>Deepest JSON nesting a header may have (a tensor's shape sits at depth 3).</summary>
    private const int MaxHeaderDepth = 8;

    private readonly Stream _stream;

    private SafetensorsFile(string path, Stream stream, Dictionary<string, SafetensorsEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path;
        _stream = stream;
        Entries = entries;
        Metadata = metadata;
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <summary>The tensors the file holds, by name.</summary>
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries { get; }

    /// <summary>The header's <c>__metadata__</c> strings.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">The file is truncated, or its header is not a valid safetensors header.</exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"Safetensors file '{path}' does not exist.", path);
        return FromStream(path, new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16));
    }

    /// <summary>Reads the safetensors bytes of a seekable <paramref name="stream"/>, which the result owns (disposed here on failure).</summary>
    internal static SafetensorsFile FromStream(string name, Stream stream)
    {
        try
        {
            var (entries, metadata) = ReadHeader(name, stream);
            return new SafetensorsFile(name, stream, entries, metadata);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads tensor <paramref name="name"/> as a new CPU tensor of the file's dtype, then converts it to
    /// <paramref name="dtype"/> and moves it to <paramref name="device"/> if given.
    /// </summary>
    public Tensor Read(string name, ScalarType? dtype = null, Device? device = null)
    {
        if (!Entries.TryGetValue(name, out var entry))
            throw new KeyNotFoundException($"Tensor '{name}' is not in '{Path}'.");
        using var scope = NewDisposeScope();
        var result = empty(entry.Shape, entry.Dtype);
        if (entry.Length > 0)
        {
            _stream.Seek(entry.Offset, SeekOrigin.Begin);
            try
            {
                TensorBytes.ReadInto(_stream, result);
            }
            catch (EndOfStreamException e)
            {
                throw new InvalidDataException($"'{Path}' ends inside the data of tensor '{name}'; the file is truncated.", e);
            }
        }
        if (dtype is { } d && d != result.dtype) result = result.to(d);
        if (device is not null && device.type != DeviceType.CPU) result = result.to(device);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> in safetensors format, tensor by tensor
    /// (non-contiguous or non-CPU tensors are copied one at a time). Keys are written in ordinal order.
    /// </summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => Write(path, tensors.Select(p => (p.Key, p.Value.dtype, p.Value.shape, (Func<Tensor>)(() => p.Value), false)), metadata);

    /// <summary>
    /// Writes tensors that are made one at a time: the header from each one's name, dtype and shape, then each tensor
    /// from its producer, written and (when <c>Owned</c>) disposed before the next is made, so a whole checkpoint never
    /// sits in memory. A produced tensor of another dtype or shape than announced is an error.
    /// </summary>
    internal static void Write(string path, IEnumerable<(string Name, ScalarType Dtype, long[] Shape, Func<Tensor> Produce, bool Owned)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var ordered = tensors.OrderBy(p => p.Name, StringComparer.Ordinal).ToList();
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var (name, dtype, shape, _, _) in ordered)
        {
            long length = shape.Aggregate(1L, (a, b) => checked(a * b)) * dtype.ElementSize();
            header[name] = new Dictionary<string, object>
            {
                ["dtype"] = DtypeName(dtype),
                ["shape"] = shape,
                ["data_offsets"] = new[] { offset, offset + length },
            };
            offset += length;
        }
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        int padding = (8 - json.Length % 8) % 8; // align the data to 8 bytes, as the reference writer does
        string temporary = path + ".partial";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                stream.Write(BitConverter.GetBytes((ulong)(json.Length + padding)));
                stream.Write(json);
                for (int i = 0; i < padding; i++) stream.WriteByte((byte)' ');
                foreach (var (name, dtype, shape, produce, owned) in ordered)
                {
                    var tensor = produce();
                    try
                    {
                        if (tensor.dtype != dtype || !tensor.shape.SequenceEqual(shape))
                            throw new InvalidOperationException(
                                $"Tensor '{name}' was announced as {dtype} {Guard.Shape(shape)} but made as {tensor.dtype} {Guard.Shape(tensor)}.");
                        TensorBytes.WriteTo(stream, tensor);
                    }
                    finally
                    {
                        if (owned) tensor.Dispose();
                    }
                }
            }
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    private static (Dictionary<string, SafetensorsEntry>, Dictionary<string, string>) ReadHeader(string path, Stream stream)
    {
        long fileLength = stream.Length;
        if (fileLength < 8)
            throw new InvalidDataException($"'{path}' is {fileLength} bytes long, too short for a safetensors header; the file is truncated or not safetensors.");
        Span<byte> sizeBytes = stackalloc byte[8];
        stream.ReadExactly(sizeBytes);
        ulong headerSize = BitConverter.ToUInt64(sizeBytes);
        if (headerSize > MaxHeaderBytes || (long)headerSize > fileLength - 8)
            throw new InvalidDataException(
                $"'{path}' declares a {headerSize}-byte header, but the file holds {fileLength - 8} bytes after the size field (and headers are at most {MaxHeaderBytes}); the file is truncated or not safetensors.");
        var headerBytes = new byte[headerSize];
        stream.ReadExactly(headerBytes);
        long dataStart = 8 + (long)headerSize;
        long dataLength = fileLength - dataStart;

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(headerBytes, new JsonDocumentOptions { MaxDepth = MaxHeaderDepth });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"The header of '{path}' is not valid JSON: {e.Message}", e);
        }
        using (document)
        try
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"The header of '{path}' must be a JSON object.");
            var entries = new Dictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    if (property.Value.ValueKind == JsonValueKind.Object)
                        foreach (var m in property.Value.EnumerateObject())
                            metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                if (entries.ContainsKey(property.Name))
                    throw new InvalidDataException($"The header of '{path}' lists tensor '{property.Name}' twice.");
                entries[property.Name] = ParseEntry(path, property, dataStart, dataLength);
            }
            CheckTiling(path, entries.Values, dataStart, dataLength);
            return (entries, metadata);
        }
        catch (InvalidOperationException e)     // text that is not UTF-8, read as a name or string
        {
            throw new InvalidDataException($"The header of '{path}' holds text that is not valid UTF-8: {e.Message}", e);
        }
    }

    private static SafetensorsEntry ParseEntry(string path, JsonProperty property, long dataStart, long dataLength)
    {
        string name = property.Name;
        InvalidDataException Bad(string what) => new($"Tensor '{name}' in '{path}': {what}");
        var value = property.Value;
        if (value.ValueKind != JsonValueKind.Object
            || !value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String
            || !value.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array
            || !value.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array
            || offsetsElement.GetArrayLength() != 2)
            throw Bad("the entry must be an object with dtype, shape and data_offsets [begin, end].");
        string dtypeName = dtypeElement.GetString()!;
        var dtype = ParseDtype(dtypeName) ?? throw Bad($"dtype '{dtypeName}' is not supported (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL).");
        var shape = new long[shapeElement.GetArrayLength()];
        int i = 0;
        long elements = 1;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long size) || size < 0)
                throw Bad($"shape {shapeElement.GetRawText()} must hold non-negative integers.");
            shape[i++] = size;
            elements = size == 0 ? 0 : checked(elements * size);
        }
        long[] offsets = new long[2];
        i = 0;
        foreach (var o in offsetsElement.EnumerateArray())
        {
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out offsets[i]) || offsets[i] < 0)
                throw Bad($"data_offsets {offsetsElement.GetRawText()} must be two non-negative integers.");
            i++;
        }
        long begin = offsets[0], end = offsets[1];
        if (end < begin)
            throw Bad($"data_offsets [{begin}, {end}] end before they begin.");
        if (end > dataLength)
            throw Bad($"data_offsets [{begin}, {end}] point outside the file's {dataLength} data bytes; the file is truncated or corrupt.");
        long expected = checked(elements * dtype.ElementSize());
        if (end - begin != expected)
            throw Bad($"shape [{string.Join(", ", shape)}] of {dtypeName} needs {expected} bytes, but data_offsets [{begin}, {end}] hold {end - begin}.");
        return new SafetensorsEntry(name, dtype, shape, dataStart + begin, end - begin);
    }

    /// <summary>
    /// The format's own rule (the reference implementation's validate): sorted by offset, the tensors' bytes tile the
    /// data section exactly, so no two tensors share bytes and nothing hides between or after them.
    /// </summary>
    private static void CheckTiling(string path, IEnumerable<SafetensorsEntry> entries, long dataStart, long dataLength)
    {
        long end = 0;
        string? previous = null;
        foreach (var entry in entries.OrderBy(e => e.Offset).ThenBy(e => e.Length).ThenBy(e => e.Name, StringComparer.Ordinal))
        {
            long begin = entry.Offset - dataStart;
            if (begin < end)
                throw new InvalidDataException(
                    $"Tensor '{entry.Name}' in '{path}': data_offsets [{begin}, {begin + entry.Length}] overlap tensor '{previous}', which ends at {end}; tensors must not share bytes.");
            if (begin > end)
                throw new InvalidDataException(
                    $"Tensor '{entry.Name}' in '{path}': data_offsets [{begin}, {begin + entry.Length}] leave {begin - end} unused bytes after {(previous is null ? "the header" : $"tensor '{previous}'")}, which ends at {end}; tensors must follow one another without gaps.");
            end = begin + entry.Length;
            previous = entry.Name;
        }
        if (end != dataLength)
            throw new InvalidDataException(
                $"'{path}' holds {dataLength - end} bytes after its last tensor{(previous is null ? "" : $" '{previous}'")}, which ends at data byte {end}; the data section must end where the last tensor does.");
    }

    private static ScalarType? ParseDtype(string name) => name switch
    {
        "F64" => ScalarType.Float64,
        "F32" => ScalarType.Float32,
        "F16" => ScalarType.Float16,
        "BF16" => ScalarType.BFloat16,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        "I16" => ScalarType.Int16,
        "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte,
        "BOOL" => ScalarType.Bool,
        _ => null,
    };

    private static string DtypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float64 => "F64",
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Int16 => "I16",
        ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8",
        ScalarType.Bool => "BOOL",
        _ => throw new NotSupportedException($"dtype {dtype} cannot be written to safetensors."),
    };

    /// <summary>Closes the file.</summary>
    public void Dispose() => _stream.Dispose();
}
