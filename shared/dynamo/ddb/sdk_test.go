package ddb

import (
	"context"
	"fmt"
	"reflect"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// api is what the tests call on a Client and on the SDK's client alike.
type api interface {
	GetItem(context.Context, *GetItemInput) (*GetItemOutput, error)
	PutItem(context.Context, *PutItemInput) (*PutItemOutput, error)
	UpdateItem(context.Context, *UpdateItemInput) (*UpdateItemOutput, error)
	DeleteItem(context.Context, *DeleteItemInput) (*DeleteItemOutput, error)
	BatchGetItem(context.Context, *BatchGetItemInput) (*BatchGetItemOutput, error)
	BatchWriteItem(context.Context, *BatchWriteItemInput) (*BatchWriteItemOutput, error)
	TransactWriteItems(context.Context, *TransactWriteItemsInput) (*TransactWriteItemsOutput, error)
	Query(context.Context, *QueryInput) (*QueryOutput, error)
	CreateTable(context.Context, *CreateTableInput) (*CreateTableOutput, error)
	DescribeTable(context.Context, *DescribeTableInput) (*DescribeTableOutput, error)
	UpdateTable(context.Context, *UpdateTableInput) (*UpdateTableOutput, error)
	UpdateTimeToLive(context.Context, *UpdateTimeToLiveInput) (*UpdateTimeToLiveOutput, error)
}

var _ api = (*Client)(nil)

// sdkClient is the SDK's client behind this package's shapes: each input
// is converted field by field to the SDK's input of the same name, sent by
// the SDK (its serialisation, its deserialisation), and its output
// converted back. The tests hold a Client to what it does.
type sdkClient struct{ c *dynamodb.Client }

var _ api = (*sdkClient)(nil)

func viaSDK[I, O, SI, SO any](ctx context.Context, in *I, f func(context.Context, *SI, ...func(*dynamodb.Options)) (*SO, error)) (*O, error) {
	si := new(SI)
	convert(reflect.ValueOf(si).Elem(), reflect.ValueOf(in).Elem(), true)
	so, err := f(ctx, si)
	if err != nil {
		return nil, err
	}
	o := new(O)
	convert(reflect.ValueOf(o).Elem(), reflect.ValueOf(so).Elem(), false)
	return o, nil
}

func (s *sdkClient) GetItem(ctx context.Context, in *GetItemInput) (*GetItemOutput, error) {
	return viaSDK[GetItemInput, GetItemOutput](ctx, in, s.c.GetItem)
}

func (s *sdkClient) PutItem(ctx context.Context, in *PutItemInput) (*PutItemOutput, error) {
	return viaSDK[PutItemInput, PutItemOutput](ctx, in, s.c.PutItem)
}

func (s *sdkClient) UpdateItem(ctx context.Context, in *UpdateItemInput) (*UpdateItemOutput, error) {
	return viaSDK[UpdateItemInput, UpdateItemOutput](ctx, in, s.c.UpdateItem)
}

func (s *sdkClient) DeleteItem(ctx context.Context, in *DeleteItemInput) (*DeleteItemOutput, error) {
	return viaSDK[DeleteItemInput, DeleteItemOutput](ctx, in, s.c.DeleteItem)
}

func (s *sdkClient) BatchGetItem(ctx context.Context, in *BatchGetItemInput) (*BatchGetItemOutput, error) {
	return viaSDK[BatchGetItemInput, BatchGetItemOutput](ctx, in, s.c.BatchGetItem)
}

func (s *sdkClient) BatchWriteItem(ctx context.Context, in *BatchWriteItemInput) (*BatchWriteItemOutput, error) {
	return viaSDK[BatchWriteItemInput, BatchWriteItemOutput](ctx, in, s.c.BatchWriteItem)
}

func (s *sdkClient) TransactWriteItems(ctx context.Context, in *TransactWriteItemsInput) (*TransactWriteItemsOutput, error) {
	return viaSDK[TransactWriteItemsInput, TransactWriteItemsOutput](ctx, in, s.c.TransactWriteItems)
}

func (s *sdkClient) Query(ctx context.Context, in *QueryInput) (*QueryOutput, error) {
	return viaSDK[QueryInput, QueryOutput](ctx, in, s.c.Query)
}

func (s *sdkClient) CreateTable(ctx context.Context, in *CreateTableInput) (*CreateTableOutput, error) {
	return viaSDK[CreateTableInput, CreateTableOutput](ctx, in, s.c.CreateTable)
}

func (s *sdkClient) DescribeTable(ctx context.Context, in *DescribeTableInput) (*DescribeTableOutput, error) {
	return viaSDK[DescribeTableInput, DescribeTableOutput](ctx, in, s.c.DescribeTable)
}

func (s *sdkClient) UpdateTable(ctx context.Context, in *UpdateTableInput) (*UpdateTableOutput, error) {
	return viaSDK[UpdateTableInput, UpdateTableOutput](ctx, in, s.c.UpdateTable)
}

func (s *sdkClient) UpdateTimeToLive(ctx context.Context, in *UpdateTimeToLiveInput) (*UpdateTimeToLiveOutput, error) {
	return viaSDK[UpdateTimeToLiveInput, UpdateTimeToLiveOutput](ctx, in, s.c.UpdateTimeToLive)
}

// members names each side's AttributeValue kinds.
var members = [2]map[string]reflect.Type{
	typesByName(&AttributeValueMemberS{}, &AttributeValueMemberN{}, &AttributeValueMemberB{}, &AttributeValueMemberBOOL{},
		&AttributeValueMemberNULL{}, &AttributeValueMemberM{}, &AttributeValueMemberL{}, &AttributeValueMemberSS{},
		&AttributeValueMemberNS{}, &AttributeValueMemberBS{}),
	typesByName(&types.AttributeValueMemberS{}, &types.AttributeValueMemberN{}, &types.AttributeValueMemberB{}, &types.AttributeValueMemberBOOL{},
		&types.AttributeValueMemberNULL{}, &types.AttributeValueMemberM{}, &types.AttributeValueMemberL{}, &types.AttributeValueMemberSS{},
		&types.AttributeValueMemberNS{}, &types.AttributeValueMemberBS{}),
}

func typesByName(vs ...any) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for _, v := range vs {
		t := reflect.TypeOf(v).Elem()
		m[t.Name()] = t
	}
	return m
}

// convert sets dst to src's value in dst's shapes. One of them is this
// package's (src when oursIsSrc), the other the SDK's; structs are copied
// by the names of this package's fields, every one of which the SDK's
// shape must have.
func convert(dst, src reflect.Value, oursIsSrc bool) {
	switch src.Kind() {
	case reflect.Struct:
		ours := dst.Type()
		if oursIsSrc {
			ours = src.Type()
		}
		for i := range ours.NumField() {
			name := ours.Field(i).Name
			s, d := src.FieldByName(name), dst.FieldByName(name)
			if !s.IsValid() || !d.IsValid() {
				panic(fmt.Sprintf("convert %s to %s: no field %s", src.Type(), dst.Type(), name))
			}
			convert(d, s, oursIsSrc)
		}
	case reflect.Pointer:
		if src.IsNil() {
			dst.Set(reflect.Zero(dst.Type()))
			return
		}
		n := reflect.New(dst.Type().Elem())
		convert(n.Elem(), src.Elem(), oursIsSrc)
		dst.Set(n)
	case reflect.Interface: // an AttributeValue
		if src.IsNil() {
			dst.Set(reflect.Zero(dst.Type()))
			return
		}
		v := src.Elem().Elem() // *AttributeValueMemberX → its struct
		side := 0
		if oursIsSrc {
			side = 1
		}
		t, ok := members[side][v.Type().Name()]
		if !ok {
			panic(fmt.Sprintf("convert %s: unknown attribute value kind", v.Type()))
		}
		n := reflect.New(t)
		convert(n.Elem(), v, oursIsSrc)
		dst.Set(n)
	case reflect.Map:
		if src.IsNil() {
			dst.Set(reflect.Zero(dst.Type()))
			return
		}
		m := reflect.MakeMapWithSize(dst.Type(), src.Len())
		for it := src.MapRange(); it.Next(); {
			v := reflect.New(dst.Type().Elem()).Elem()
			convert(v, it.Value(), oursIsSrc)
			m.SetMapIndex(it.Key().Convert(dst.Type().Key()), v)
		}
		dst.Set(m)
	case reflect.Slice:
		if src.IsNil() {
			dst.Set(reflect.Zero(dst.Type()))
			return
		}
		s := reflect.MakeSlice(dst.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			convert(s.Index(i), src.Index(i), oursIsSrc)
		}
		dst.Set(s)
	case reflect.String:
		dst.SetString(src.String())
	case reflect.Bool:
		dst.SetBool(src.Bool())
	case reflect.Float32, reflect.Float64:
		dst.SetFloat(src.Float())
	case reflect.Int, reflect.Int32, reflect.Int64:
		dst.SetInt(src.Int())
	case reflect.Uint8:
		dst.SetUint(src.Uint())
	default:
		panic(fmt.Sprintf("convert %s: unsupported kind %s", src.Type(), src.Kind()))
	}
}
