package api

import "net/http"

// Mount serves h at pattern on the API's listener, beside the API (the
// operator console lives there). Mounted handlers are not counted as API
// requests and do their own authorization, with RequireKey.
func (s *Server) Mount(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// RequireKey wraps h so that it answers like /v1/ without the API key: 401
// with OpenAI's error body.
func (s *Server) RequireKey(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r.Header.Get("Authorization")); err != nil {
			writeError(w, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}
