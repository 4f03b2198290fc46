using System.Text;
using Microsoft.ML.Tokenizers;

namespace GqaTransformer;

/// <summary>
/// Token ids from plain text, streamed: a file (or every <c>.txt</c> file of a folder, in name order) is read a line at a
/// time and encoded by a tokenizer, or taken as UTF-8 bytes (ids 0-255) when there is none, so a corpus larger than memory
/// can be read. <see cref="Pack"/> cuts the stream into fixed-length sequences.
/// </summary>
public static class TextTokens
{
    /// <summary>Token ids of the text at <paramref name="path"/> (a file or a folder of .txt files), lines joined by '\n'.</summary>
    public static IEnumerable<int> Read(string path, Tokenizer? tokenizer = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string[] files = Directory.Exists(path)
            ? Directory.GetFiles(path, "*.txt").Order(StringComparer.Ordinal).ToArray()
            : File.Exists(path) ? [path] : throw new FileNotFoundException($"Text '{path}' does not exist.", path);
        if (files.Length == 0) throw new FileNotFoundException($"Folder '{path}' holds no .txt file.", path);
        return ReadFiles(files, tokenizer);
    }

    private static IEnumerable<int> ReadFiles(string[] files, Tokenizer? tokenizer)
    {
        foreach (var file in files)
            foreach (var line in File.ReadLines(file))
            {
                string text = line + "\n";
                if (tokenizer is null)
                    foreach (byte b in Encoding.UTF8.GetBytes(text)) yield return b;
                else
                    foreach (int id in tokenizer.EncodeToIds(text, considerPreTokenization: true, considerNormalization: true)) yield return id;
            }
    }

    /// <summary>Consecutive sequences of <paramref name="length"/> tokens from <paramref name="tokens"/> (a last shorter rest is dropped).</summary>
    public static IEnumerable<long[]> Pack(IEnumerable<int> tokens, int length)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (length < 2) throw new ArgumentOutOfRangeException(nameof(length), length, $"length must be at least 2, but was {length}.");
        return PackIterator(tokens, length);
    }

    private static IEnumerable<long[]> PackIterator(IEnumerable<int> tokens, int length)
    {
        var sequence = new long[length];
        int filled = 0;
        foreach (int token in tokens)
        {
            sequence[filled++] = token;
            if (filled < length) continue;
            yield return sequence;
            sequence = new long[length];
            filled = 0;
        }
    }
}
