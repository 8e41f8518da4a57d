#include <exportengine/testing/storage_sink_conformance.hpp>
