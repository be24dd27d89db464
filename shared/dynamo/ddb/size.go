package ddb

// ItemSize approximates the size DynamoDB bills an item by: each
// attribute's name plus its value, a string or binary by its length, a
// number by about one byte per two digits plus one, a set by its members,
// a map or list by its elements plus 3 bytes and 1 per element, a boolean
// or null by 1. Read units count it in 4 KB steps, write units in 1 KB.
func ItemSize(item map[string]AttributeValue) int {
	n := 0
	for name, v := range item {
		n += len(name) + valueSize(v)
	}
	return n
}

func valueSize(v AttributeValue) int {
	switch v := v.(type) {
	case *AttributeValueMemberS:
		return len(v.Value)
	case *AttributeValueMemberN:
		return len(v.Value)/2 + 1
	case *AttributeValueMemberB:
		return len(v.Value)
	case *AttributeValueMemberSS:
		return lengths(v.Value)
	case *AttributeValueMemberNS:
		n := 0
		for _, s := range v.Value {
			n += len(s)/2 + 1
		}
		return n
	case *AttributeValueMemberBS:
		return lengths(v.Value)
	case *AttributeValueMemberM:
		return 3 + len(v.Value) + ItemSize(v.Value)
	case *AttributeValueMemberL:
		n := 3 + len(v.Value)
		for _, e := range v.Value {
			n += valueSize(e)
		}
		return n
	default: // BOOL, NULL
		return 1
	}
}

// lengths is the sum of the lengths of a set's members.
func lengths[T ~string | ~[]byte](members []T) int {
	n := 0
	for _, m := range members {
		n += len(m)
	}
	return n
}
