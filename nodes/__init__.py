"""rillet's components: messages, prompts, models, parsers, retrievers and tools.

Layout: ``_messages``/``_prompt_values`` (values; ``_metadata`` adds chunks' metadata
up), ``_prompts``/``_message_templates``/``_chat_prompt`` with
``_template_formats``/``_mustache`` (templates), ``_chat_model`` (the chat-model base and
the scripted model), ``_llm`` (the completion-model base and the scripted LLM), ``_anthropic``
(``ChatAnthropic``), ``_parsers`` with ``_json_stream``/``_jsonpatch`` (parsers),
``_retrievers`` (documents, BM25 retriever), ``_tools`` (``@tool``), ``_tool_loop``
(``ToolLoop``), ``_schema`` and ``_structured`` (structured output: schemas,
``with_structured_output``'s parser). Every component is a runnable of the ``engine``
package; the names follow the streaming guide's, so its code ports with only the imports
changed.
"""

from ._anthropic import ChatAnthropic as ChatAnthropic
from ._anthropic import MissingCredentialsError as MissingCredentialsError
from ._anthropic import ModelStreamError as ModelStreamError
from ._chat_model import BaseChatModel as BaseChatModel
from ._chat_model import ScriptedChatModel as ScriptedChatModel
from ._chat_model import ScriptedReply as ScriptedReply
from ._chat_model import split_tokens as split_tokens
from ._chat_prompt import ChatPromptTemplate as ChatPromptTemplate
from ._exceptions import OutputParserException as OutputParserException
from ._exceptions import SecretShippedWarning as SecretShippedWarning
from ._json_stream import IncrementalJsonParser as IncrementalJsonParser
from ._jsonpatch import apply_patch as apply_patch
from ._jsonpatch import json_patch_ops as json_patch_ops
from ._llm import BaseLLM as BaseLLM
from ._llm import ScriptedLLM as ScriptedLLM
from ._message_templates import AIMessagePromptTemplate as AIMessagePromptTemplate
from ._message_templates import BaseMessagePromptTemplate as BaseMessagePromptTemplate
from ._message_templates import HumanMessagePromptTemplate as HumanMessagePromptTemplate
from ._message_templates import MessagesPlaceholder as MessagesPlaceholder
from ._message_templates import SystemMessagePromptTemplate as SystemMessagePromptTemplate
from ._messages import AIMessage as AIMessage
from ._messages import AIMessageChunk as AIMessageChunk
from ._messages import BaseMessage as BaseMessage
from ._messages import HumanMessage as HumanMessage
from ._messages import InvalidToolCall as InvalidToolCall
from ._messages import SystemMessage as SystemMessage
from ._messages import ToolCall as ToolCall
from ._messages import ToolCallChunk as ToolCallChunk
from ._messages import ToolMessage as ToolMessage
from ._messages import UsageMetadata as UsageMetadata
from ._messages import coerce_to_messages as coerce_to_messages
from ._parsers import CommaSeparatedListOutputParser as CommaSeparatedListOutputParser
from ._parsers import JsonOutputParser as JsonOutputParser
from ._parsers import StrOutputParser as StrOutputParser
from ._prompt_values import ChatPromptValue as ChatPromptValue
from ._prompt_values import PromptValue as PromptValue
from ._prompt_values import StringPromptValue as StringPromptValue
from ._prompts import PromptTemplate as PromptTemplate
from ._prompts import PromptVariableError as PromptVariableError
from ._retrievers import BaseRetriever as BaseRetriever
from ._retrievers import Document as Document
from ._retrievers import InMemoryRetriever as InMemoryRetriever
from ._schema import SchemaValidationError as SchemaValidationError
from ._schema import UnsupportedSchemaError as UnsupportedSchemaError
from ._tool_loop import ToolLoop as ToolLoop
from ._tool_loop import ToolLoopError as ToolLoopError
from ._tool_loop import ToolLoopLimitError as ToolLoopLimitError
from ._tools import Tool as Tool
from ._tools import ToolArgumentError as ToolArgumentError
from ._tools import ToolException as ToolException
from ._tools import tool as tool

__all__ = (
    "AIMessage",
    "AIMessageChunk",
    "AIMessagePromptTemplate",
    "BaseChatModel",
    "BaseLLM",
    "BaseMessage",
    "BaseMessagePromptTemplate",
    "BaseRetriever",
    "ChatAnthropic",
    "ChatPromptTemplate",
    "ChatPromptValue",
    "CommaSeparatedListOutputParser",
    "Document",
    "HumanMessage",
    "HumanMessagePromptTemplate",
    "InMemoryRetriever",
    "IncrementalJsonParser",
    "InvalidToolCall",
    "JsonOutputParser",
    "MessagesPlaceholder",
    "MissingCredentialsError",
    "ModelStreamError",
    "OutputParserException",
    "SecretShippedWarning",
    "PromptTemplate",
    "PromptValue",
    "PromptVariableError",
    "SchemaValidationError",
    "ScriptedChatModel",
    "ScriptedLLM",
    "ScriptedReply",
    "StrOutputParser",
    "StringPromptValue",
    "SystemMessage",
    "SystemMessagePromptTemplate",
    "Tool",
    "ToolArgumentError",
    "ToolCall",
    "ToolCallChunk",
    "ToolException",
    "ToolLoop",
    "ToolLoopError",
    "ToolLoopLimitError",
    "ToolMessage",
    "UnsupportedSchemaError",
    "UsageMetadata",
    "apply_patch",
    "coerce_to_messages",
    "json_patch_ops",
    "split_tokens",
    "tool",
)
