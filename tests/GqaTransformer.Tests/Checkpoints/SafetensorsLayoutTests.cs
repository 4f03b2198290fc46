using System.Text;
using FluentAssertions;
using GqaTransformer;
using Xunit;
using static TorchSharp.torch;

namespace GqaTransformer.Tests;

/// <summary>
/// What the safetensors format itself refuses (the reference implementation's validate): tensors' bytes must tile
/// the data section exactly, in offset order, with nothing shared, skipped or left over; names are unique; the
/// header's nesting is bounded.
/// </summary>
public class SafetensorsLayoutTests
{
    [Theory]
    [InlineData("""{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}""", 12,
        "*'b'*data_offsets [4, 12] overlap tensor 'a', which ends at 8*")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}""", 8,
        "*'b'*data_offsets [0, 8] overlap tensor 'a'*")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}""", 20,
        "*'b'*leave 4 unused bytes after tensor 'a', which ends at 8*")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}""", 12, "*'a'*leave 4 unused bytes after the header*")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}""", 12, "*holds 4 bytes after its last tensor 'a'*")]
    [InlineData("""{"__metadata__": {"format": "pt"}}""", 3, "*holds 3 bytes after its last tensor, which ends at data byte 0*")]
    [InlineData("""{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}""", 16,
        "*lists tensor 'a' twice*")]
    [InlineData("""{"__metadata__": {"x": [[[[[[[[[[1]]]]]]]]]]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}""", 8, "*not valid JSON*depth*")]
    public void Files_the_format_refuses_are_refused_by_name(string header, int dataBytes, string message)
    {
        FluentActions.Invoking(() => Open(header, dataBytes)).Should().Throw<InvalidDataException>().WithMessage("*test.safetensors*").WithMessage(message);
    }

    [Theory]
    [InlineData("""{"b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}""", 16)]
    [InlineData("""{"e": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "z": {"dtype": "I64", "shape": [0, 3], "data_offsets": [8, 8]}}""", 8)]
    [InlineData("""{"e": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}""", 0)]
    [InlineData("""{}""", 0)]
    public void Tensors_that_tile_the_data_in_any_header_order_are_accepted(string header, int dataBytes)
    {
        using var scope = NewDisposeScope();
        using var file = Open(header, dataBytes);
        foreach (var name in file.Entries.Keys) file.Read(name);
    }

    [Fact]
    public void Files_this_library_writes_tile_their_data()
    {
        using var scope = NewDisposeScope();
        string path = Path.GetTempFileName();
        try
        {
            SafetensorsFile.Save(path, [new("b", ones(3, ScalarType.BFloat16)), new("a", zeros(0)), new("c", arange(5))]);
            using var file = SafetensorsFile.Open(path);
            file.Read("c").data<long>().ToArray().Should().Equal(0, 1, 2, 3, 4);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static SafetensorsFile Open(string header, int dataBytes)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        byte[] bytes = [.. BitConverter.GetBytes((ulong)json.Length), .. json, .. new byte[dataBytes]];
        return SafetensorsFile.FromStream("test.safetensors", new MemoryStream(bytes, writable: false));
    }
}
