from engine import RunnableGenerator


async def test_two_steps_stream() -> None:
    """A two-step generator chain streams every chunk in order."""

    async def words(chunks):
        async for text in chunks:
            for word in text.split():
                yield word

    async def upper(chunks):
        async for word in chunks:
            yield word.upper()

    chain = RunnableGenerator(words) | upper
    assert [c async for c in chain.astream("a b c")] == ["A", "B", "C"]
