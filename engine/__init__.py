"""rillet's engine: runnables, composition, the actor runtime and lifecycle events.

Layout: ``_runnable`` (the run API), ``_compose`` (sequences, parallel steps, bindings),
``_functions`` (lambdas, generators, passthrough), ``_branch`` (routing), ``_bind``
(bound call arguments), ``_configurable`` (per-call fields and alternatives),
``_listeners`` (``with_listeners``), ``_pick`` (``pick``, ``map``), ``_actors`` (the transform and aggregate node kinds),
``_launch``/``_edge``/``_run`` (the runtime), ``_step``/``_bus`` (events; ``_forward`` re-publishes a remote run's events; ``_events``
holds their shape and names, ``_replay`` the replay logs that readers resume from).
``engine.testing`` holds helpers for users' own tests; ``engine.sse`` serves a run as
server-sent events (the optional ``service`` extra); ``engine.ray`` runs a runnable on
Ray actors (the optional ``ray`` extra).
"""

from ._actors import AggregateNode as AggregateNode
from ._actors import TransformNode as TransformNode
from ._branch import RunnableBranch as RunnableBranch
from ._bus import EventBus as EventBus
from ._bus import EventFilter as EventFilter
from ._bus import Overflow as Overflow
from ._bus import StreamEvents as StreamEvents
from ._bus import Subscription as Subscription
from ._bus import SubscriptionStatistics as SubscriptionStatistics
from ._chunks import AddableDict as AddableDict
from ._chunks import concat_chunks as concat_chunks
from ._compose import RunnableAssign as RunnableAssign
from ._compose import RunnableBinding as RunnableBinding
from ._compose import RunnableParallel as RunnableParallel
from ._compose import RunnableSequence as RunnableSequence
from ._config import RunConfig as RunConfig
from ._config import RunnableConfig as RunnableConfig
from ._config import step_config as step_config
from ._configurable import ConfigurableField as ConfigurableField
from ._configurable import RunnableConfigurableAlternatives as RunnableConfigurableAlternatives
from ._configurable import RunnableConfigurableFields as RunnableConfigurableFields
from ._custom import adispatch_custom_event as adispatch_custom_event
from ._custom import dispatch_custom_event as dispatch_custom_event
from ._edge import Accumulation as Accumulation
from ._edge import Edge as Edge
from ._edge import EdgeStatistics as EdgeStatistics
from ._errors import CompositionError as CompositionError
from ._errors import ConfigError as ConfigError
from ._errors import RecursionLimitError as RecursionLimitError
from ._errors import UnexpectedCancellation as UnexpectedCancellation
from ._events import Event as Event
from ._events import EventPhase as EventPhase
from ._events import StampedEvent as StampedEvent
from ._events import StreamEvent as StreamEvent
from ._events import event_name as event_name
from ._events import kind_of as kind_of
from ._events import phase_of as phase_of
from ._fallbacks import RunnableWithFallbacks as RunnableWithFallbacks
from ._forward import EventForwarder as EventForwarder
from ._forward import StepContext as StepContext
from ._functions import RunnableGenerator as RunnableGenerator
from ._functions import RunnableLambda as RunnableLambda
from ._functions import RunnablePassthrough as RunnablePassthrough
from ._functions import chain as chain
from ._functions import coerce_runnable as coerce_runnable
from ._functions import run_in_worker_thread as run_in_worker_thread
from ._hosting import Emitter as Emitter
from ._hosting import HostingNode as HostingNode
from ._listeners import Run as Run
from ._listeners import RunnableListeners as RunnableListeners
from ._pick import RunnableEach as RunnableEach
from ._pick import RunnablePick as RunnablePick
from ._ratelimit import RateLimiter as RateLimiter
from ._ratelimit import RateLimiterStatistics as RateLimiterStatistics
from ._ratelimit import RunnableRateLimited as RunnableRateLimited
from ._replay import ReplayLog as ReplayLog
from ._replay import ReplayLogStatistics as ReplayLogStatistics
from ._replay import ReplayReader as ReplayReader
from ._retry import ExponentialJitterParams as ExponentialJitterParams
from ._retry import RunnableRetry as RunnableRetry
from ._retry import is_transient_error as is_transient_error
from ._retry import retry_after_seconds as retry_after_seconds
from ._run import RunStream as RunStream
from ._run import StreamState as StreamState
from ._runnable import Runnable as Runnable
from ._step import RunCancelled as RunCancelled
from ._step import Step as Step
from ._step import current_step as current_step
from ._timeout import RunnableTimeout as RunnableTimeout
from ._timeout import StepTimeout as StepTimeout
from ._timeout import TimeoutPhase as TimeoutPhase

__all__ = (
    "Accumulation",
    "AddableDict",
    "AggregateNode",
    "CompositionError",
    "ConfigError",
    "ConfigurableField",
    "Edge",
    "EdgeStatistics",
    "Emitter",
    "Event",
    "EventBus",
    "EventForwarder",
    "EventFilter",
    "EventPhase",
    "ExponentialJitterParams",
    "HostingNode",
    "Overflow",
    "RateLimiter",
    "RateLimiterStatistics",
    "RecursionLimitError",
    "Run",
    "ReplayLog",
    "ReplayLogStatistics",
    "ReplayReader",
    "RunCancelled",
    "RunConfig",
    "RunStream",
    "Runnable",
    "RunnableAssign",
    "RunnableBinding",
    "RunnableBranch",
    "RunnableConfig",
    "RunnableConfigurableAlternatives",
    "RunnableConfigurableFields",
    "RunnableEach",
    "RunnableGenerator",
    "RunnableLambda",
    "RunnableListeners",
    "RunnableParallel",
    "RunnablePassthrough",
    "RunnablePick",
    "RunnableRateLimited",
    "RunnableSequence",
    "RunnableTimeout",
    "RunnableRetry",
    "RunnableWithFallbacks",
    "StampedEvent",
    "Step",
    "StepContext",
    "StreamEvent",
    "StreamEvents",
    "StepTimeout",
    "StreamState",
    "Subscription",
    "SubscriptionStatistics",
    "TimeoutPhase",
    "TransformNode",
    "UnexpectedCancellation",
    "adispatch_custom_event",
    "chain",
    "coerce_runnable",
    "concat_chunks",
    "current_step",
    "dispatch_custom_event",
    "event_name",
    "kind_of",
    "phase_of",
    "is_transient_error",
    "retry_after_seconds",
    "run_in_worker_thread",
    "step_config",
)
