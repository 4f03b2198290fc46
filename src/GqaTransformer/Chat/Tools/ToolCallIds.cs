using System.Security.Cryptography;

namespace GqaTransformer;

/// <summary>
/// Call ids for calls the model wrote without one: 9 letters and digits, the shape Mistral's templates require
/// (they raise on any other) and which every other format accepts.
/// </summary>
internal static class ToolCallIds
{
    private const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    public static string New() => RandomNumberGenerator.GetString(Alphabet, 9);

    /// <summary>Whether <paramref name="id"/> is 9 ASCII letters and digits.</summary>
    public static bool IsMistralId(string id) => id.Length == 9 && id.All(char.IsAsciiLetterOrDigit);
}
