namespace GqaTransformer;

/// <summary>
/// A template's dict: insertion-ordered, with Python's keys. A key may be a str, an int, a float, a bool or None as in
/// a dict literal <c>{4096: 512}</c>, and 1, 1.0 and True are one key, as Python hashes them alike.
/// </summary>
internal sealed class JinjaDict : OrderedDictionary<object, object?>
{
    public JinjaDict() : base(PyKeyComparer.Instance) { }

    public JinjaDict(IEnumerable<KeyValuePair<object, object?>> pairs) : base(PyKeyComparer.Instance)
    {
        foreach (var (k, v) in pairs) this[k] = v; // a later equal key keeps the first key's spelling, as Python does
    }

    /// <summary>None cannot be a .NET dictionary key; it stands for Python's None as a key.</summary>
    public static object Key(object? key) => key ?? NoneKey.Instance;

    public static object? Unkey(object key) => key is NoneKey ? null : key;

    /// <summary>Python's <c>dict.items()</c>: (key, value) tuples in insertion order.</summary>
    public List<object?> Items() => this.Select(p => (object?)JinjaTuple.Pair(Unkey(p.Key), p.Value)).ToList();

    internal sealed class NoneKey
    {
        public static readonly NoneKey Instance = new();
    }

    private sealed class PyKeyComparer : IEqualityComparer<object>
    {
        public static readonly PyKeyComparer Instance = new();

        public new bool Equals(object? x, object? y) => x is long or double or bool && y is long or double or bool
            ? JinjaValues.ToDouble(x) == JinjaValues.ToDouble(y)
            : x is string a && y is string b ? string.Equals(a, b, StringComparison.Ordinal) : ReferenceEquals(x, y);

        public int GetHashCode(object obj) => obj switch
        {
            long or double or bool => JinjaValues.ToDouble(obj).GetHashCode(),
            string s => StringComparer.Ordinal.GetHashCode(s),
            _ => System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(obj),
        };
    }
}
