using System.Text.Json;
using FluentAssertions;

namespace GqaTransformer.Tests;

/// <summary>Parsed arguments against the reference's JSON: same keys, values and kinds (an integer stays an integer, 2.0 a float).</summary>
internal static class ToolCallAssert
{
    public static void SameAs(object? actual, JsonElement expected, string path)
    {
        switch (expected.ValueKind)
        {
            case JsonValueKind.Object:
                actual.Should().BeAssignableTo<IDictionary<string, object?>>(path);
                var dictionary = (IDictionary<string, object?>)actual!;
                dictionary.Keys.Should().Equal(expected.EnumerateObject().Select(p => p.Name), $"{path} keeps the keys in order");
                foreach (var property in expected.EnumerateObject()) SameAs(dictionary[property.Name], property.Value, $"{path}.{property.Name}");
                break;
            case JsonValueKind.Array:
                actual.Should().BeAssignableTo<IList<object?>>(path);
                var list = (IList<object?>)actual!;
                list.Should().HaveCount(expected.GetArrayLength(), path);
                int i = 0;
                foreach (var item in expected.EnumerateArray()) { SameAs(list[i], item, $"{path}[{i}]"); i++; }
                break;
            case JsonValueKind.String: actual.Should().Be(expected.GetString(), path); break;
            case JsonValueKind.True: actual.Should().Be(true, path); break;
            case JsonValueKind.False: actual.Should().Be(false, path); break;
            case JsonValueKind.Null: actual.Should().BeNull(path); break;
            default:
                string raw = expected.GetRawText();
                if (raw.Contains('.') || raw.Contains('e') || raw.Contains('E')) actual.Should().Be(expected.GetDouble(), $"{path} is a float");
                else actual.Should().Be(expected.GetInt64(), $"{path} is an integer");
                break;
        }
    }
}
