#include <exportengine/testing/data_source_conformance.hpp>
