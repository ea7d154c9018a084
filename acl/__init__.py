"""Anti-corruption layer: translate between the monolith's data model and the new services'.

The proxy loads translators once (`load_translators`) and calls them as pure functions.
"""

from acl.declarative import DeclarativeTranslator, decode_cursor, encode_cursor
from acl.functions import Codec, ConversionError, converter, expression_function
from acl.loader import load_declarative
from acl.registry import DEFAULT_DIRECTORY, load_translators, register
from acl.translator import (
    BaseTranslator,
    LoadProblem,
    NoEndpoint,
    RequestMessage,
    RequestRejected,
    ResponseMessage,
    TranslationError,
    Translator,
    TranslatorLoadError,
)

__all__ = [
    "DEFAULT_DIRECTORY",
    "BaseTranslator",
    "Codec",
    "ConversionError",
    "DeclarativeTranslator",
    "LoadProblem",
    "NoEndpoint",
    "RequestMessage",
    "RequestRejected",
    "ResponseMessage",
    "TranslationError",
    "Translator",
    "TranslatorLoadError",
    "converter",
    "decode_cursor",
    "encode_cursor",
    "expression_function",
    "load_declarative",
    "load_translators",
    "register",
]
